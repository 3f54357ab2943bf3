require "json"

module Shop
  class Cart
    def initialize(items)
      @items = items
    end

    def total
      @items.sum { |i| i[:price] }
    end

    def self.empty
      new([]).tap { |c| c.freeze }
    end

    def items
      @items
    end

    def to_json(*args)
      JSON.generate({ items: @items }, *args)
    end

    private

    def todo
      raise NotImplementedError
    end
  end

  def self.version
    major = 1
    "#{major}.0"
  end
end

def top_level(x)
  double = ->(y) do
    y * 2
  end
  double.call(x)
end

square = ->(x) { x * x }
