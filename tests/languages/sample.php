<?php

namespace App\Shop;

use InvalidArgumentException;

function helper(int $x): int
{
    return $x * 2;
}

class Cart
{
    private array $items = [];

    public function __construct(array $items)
    {
        $this->items = $items;
    }

    #[Deprecated]
    public function total(): int
    {
        $sum = 0;
        foreach ($this->items as $item) {
            $sum += $item;
        }
        return $sum;
    }

    public static function empty(): self
    {
        return new self([]);
    }

    public function items(): array
    {
        return $this->items;
    }

    public function todo(): void
    {
        throw new \LogicException('not implemented');
    }
}

interface Priced
{
    public function price(): int;
}

trait Named
{
    public function name(): string
    {
        return static::class . '#' . spl_object_id($this);
    }
}

$double = function (int $x): int {
    return $x * 2;
};
