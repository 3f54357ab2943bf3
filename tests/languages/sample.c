#include <stdio.h>
#include <stdlib.h>

struct point {
    int x, y;
};

static int square(int x) {
    return x * x;
}

int distance2(struct point a, struct point b) {
    int dx = a.x - b.x;
    int dy = a.y - b.y;
    return square(dx) + square(dy);
}

int declared_only(int x);

const char *
name_of(struct point *p)
{
    if (p == NULL) {
        return "none";
    }
    return "point";
}

int zero(void) {
    return 0;
}

void (*handler)(int) = NULL;

int main(int argc, char **argv) {
    struct point a = {1, 2}, b = {3, 4};
    printf("%d\n", distance2(a, b));
    return 0;
}
