use std::fmt;

pub struct Stack<T> {
    items: Vec<T>,
}

impl<T> Stack<T> {
    pub fn new() -> Self {
        Stack { items: Vec::new() }
    }

    #[inline]
    #[must_use]
    pub fn push(&mut self, item: T) -> &mut Self {
        self.items.push(item);
        self
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
}

impl fmt::Display for Stack<i32> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} items", self.items.len())
    }
}

pub trait Shape {
    fn area(&self) -> f64;

    fn describe(&self) -> String {
        format!("area {}", self.area())
    }
}

pub fn outer(x: i32) -> i32 {
    let double = |y: i32| {
        y * 2
    };
    fn inner(z: i32) -> i32 {
        z + 1
    }
    double(inner(x))
}

mod util {
    pub fn helper() -> u8 {
        let a = 1;
        a + 1
    }
}

pub fn todo() {
    unimplemented!()
}

pub fn later() -> i32 {
    todo!("not implemented")
}
