#include <string>
#include <vector>

namespace geo {

class Shape {
public:
    virtual ~Shape() = default;
    virtual double area() const = 0;
    std::string name() const {
        return "shape:" + std::to_string(area());
    }
};

class Circle : public Shape {
public:
    explicit Circle(double r) : r_(r) {}
    double area() const override {
        return 3.14159 * r_ * r_;
    }
    double radius() const { return r_; }

private:
    double r_;
};

template <typename T>
T largest(const std::vector<T>& xs) {
    T best = xs.front();
    for (const auto& x : xs) {
        if (x > best) best = x;
    }
    return best;
}

double scale(double x);

}  // namespace geo

double geo::scale(double x) {
    auto twice = [](double y) {
        return y * 2;
    };
    return twice(x);
}

bool operator==(const geo::Circle& a, const geo::Circle& b) {
    return a.radius() == b.radius();
}

[[nodiscard]] int answer() {
    int x = 6;
    return x * 7;
}
