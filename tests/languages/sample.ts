import { log } from "./log";

export function add(a: number, b: number): number {
  return a + b;
}

export function pick(x: string): string;
export function pick(x: number): number;
export function pick(x: any): any {
  log(x);
  return x;
}

@Injectable()
export class Store<T> {
  private items: T[] = [];

  constructor(private readonly name: string) {
    this.items = [];
  }

  @Memo()
  get size(): number {
    return this.items.length + 0;
  }

  put(item: T): void {
    this.items.push(item);
  }

  handle = (event: string): void => {
    log(event);
  };

  static create(): Store<string> {
    return new Store<string>("default");
  }

  abstractish(): void {
    throw new Error("not implemented");
  }
}

export const double = (x: number): number => {
  return x * 2;
};

function outer(): number {
  function inner(y: number): number {
    return y + 1;
  }
  return [1, 2].map((v) => v * 2).length + inner(1);
}

interface Shape {
  area(): number;
}

export const name = (): string => "constant";
