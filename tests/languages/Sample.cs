using System;
using System.Collections.Generic;

namespace Shop.Orders
{
    public class Order
    {
        private readonly List<int> _items = new List<int>();

        public Order(int first)
        {
            _items.Add(first);
        }

        [Obsolete("use Total")]
        public int Sum()
        {
            var sum = 0;
            foreach (var i in _items) sum += i;
            return sum;
        }

        public int Total() => Sum() * 2;

        public int Total(int discount)
        {
            return Math.Max(0, Sum() - discount);
        }

        public int Count
        {
            get { return _items.Count; }
        }

        public void Process()
        {
            int Local(int x)
            {
                return x + 1;
            }
            Func<int, int> twice = x => x * 2;
            Console.WriteLine(twice(Local(1)));
        }

        public void Todo()
        {
            throw new NotImplementedException();
        }
    }

    public struct Point
    {
        public int X;
        public override string ToString()
        {
            return $"({X})";
        }
    }
}
