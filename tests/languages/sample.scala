package shop

import scala.collection.mutable

class Cart(items: List[Int]) {
  def total: Int = {
    items.foldLeft(0)(_ + _)
  }

  @deprecated("use total", "1.0")
  def sum(discount: Int): Int = {
    val t = total
    math.max(0, t - discount)
  }

  def size: Int = 0
}

object Cart {
  def empty(): Cart = {
    new Cart(Nil)
  }

  val double: Int => Int = x => {
    x * 2
  }
}

trait Priced {
  def price: Int

  def describe(): String = {
    s"price $price"
  }
}

def topLevel(x: Int): Int = {
  def inner(y: Int): Int = {
    y + 1
  }
  inner(x)
}

def todo(): Int = ???
