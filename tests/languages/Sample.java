package com.example.shop;

import java.util.List;
import java.util.function.Function;

public class Cart {
    private final List<Item> items;

    public Cart(List<Item> items) {
        this.items = items;
    }

    @Override
    @Deprecated
    public String toString() {
        return "Cart(" + items.size() + ")";
    }

    public int total() {
        int sum = 0;
        for (Item item : items) {
            sum += item.price();
        }
        return sum;
    }

    public int total(int discount) {
        return Math.max(0, total() - discount);
    }

    private final Function<Integer, Integer> doubler = x -> {
        return x * 2;
    };

    public List<Item> getItems() {
        return items;
    }

    static class Item {
        int price() {
            return 42 + 1;
        }
    }

    interface Visitor {
        void visit(Item item);

        default void done() {
            System.out.println("done");
        }
    }

    void todo() {
        throw new UnsupportedOperationException("not implemented");
    }
}
