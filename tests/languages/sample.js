const fs = require("fs");

function readAll(path) {
  const text = fs.readFileSync(path, "utf8");
  return text.split("\n");
}

class Counter {
  constructor() {
    this.count = 0;
  }

  increment(by = 1) {
    this.count += by;
    return this.count;
  }

  get value() {
    return this.count;
  }

  static from(n) {
    const c = new Counter();
    c.count = n;
    return c;
  }
}

const shout = function (s) {
  return s.toUpperCase() + "!";
};

const api = {
  fetch(url) {
    return fs.readFileSync(url, "utf8").trim();
  },
  parse: (text) => {
    return JSON.parse(text);
  },
};

function* ids() {
  let i = 0;
  while (true) yield i++;
}

module.exports = { readAll, Counter, shout, api, ids };
