import Foundation

struct Point {
    var x: Double
    var y: Double

    func distance(to other: Point) -> Double {
        let dx = x - other.x
        return (dx * dx).squareRoot()
    }
}

class Counter {
    private var count = 0

    init(start: Int) {
        count = start
    }

    @discardableResult
    func increment() -> Int {
        count += 1
        return count
    }

    func value() -> Int {
        return count
    }
}

extension Counter {
    func reset() {
        count = 0
        print("reset")
    }
}

protocol Shape {
    func area() -> Double
}

func outer(_ x: Int) -> Int {
    func inner(_ y: Int) -> Int {
        return y * 2
    }
    return inner(x) + 1
}

let square = { (x: Int) -> Int in
    return x * x
}

func todo() -> Int {
    fatalError("not implemented")
}
