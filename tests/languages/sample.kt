package com.example.shop

import kotlin.math.max

class Cart(private val items: MutableList<Int>) {
    constructor() : this(mutableListOf()) {
        println("empty cart")
    }

    @Synchronized
    fun add(price: Int) {
        items.add(price)
    }

    fun total(): Int {
        return items.sum()
    }

    fun total(discount: Int): Int = max(0, total() - discount)

    companion object {
        fun empty(): Cart {
            return Cart()
        }
    }

    fun size(): Int = 0
}

object Registry {
    fun register(name: String) {
        println("registered $name")
    }
}

fun topLevel(x: Int): Int {
    fun helper(y: Int): Int {
        return y * 2
    }
    return helper(x) + 1
}

val square = { x: Int ->
    x * x
}

fun todo(): Int = TODO()
