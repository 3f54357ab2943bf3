// Package shapes draws shapes.
package shapes

import "errors"

type Circle struct{ r float64 }

// Area is the area.
func (c Circle) Area() float64 {
	return 3.14 * c.r * c.r
}

func (c *Circle) Grow(by float64) error {
	if by < 0 {
		return errors.New("negative")
	}
	c.r += by
	return nil
}

func Map[T any](xs []T, f func(T) T) []T {
	out := make([]T, 0, len(xs))
	for _, x := range xs {
		out = append(out, f(x))
	}
	return out
}

func Outer() int {
	double := func(x int) int {
		return x * 2
	}
	return double(2) + func() int { return 1 }()
}

var Handler = func(s string) string {
	return s + "!"
}

func (c Circle) Radius() float64 {
	return c.r
}

func Todo() {
	panic("not implemented")
}

func Empty() {}
