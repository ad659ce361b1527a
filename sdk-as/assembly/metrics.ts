// Metrics defined by name through the host (the host decides how they are exported; Wisp
// puts them on its Prometheus endpoint). Define them in onConfigure or onVmStart, not per
// request: proxy_define_metric is a lookup by name on the host.

import { defineMetric, getMetric, incrementMetric, recordMetric } from "./hostcalls";
import { MetricType } from "./types";

export class Counter {
  readonly id: u32;
  constructor(public readonly name: string) { this.id = defineMetric(MetricType.Counter, name); }
  increment(by: u64 = 1): void { incrementMetric(this.id, <i64>by); }
  get(): u64 { return getMetric(this.id); }
}

export class Gauge {
  readonly id: u32;
  constructor(public readonly name: string) { this.id = defineMetric(MetricType.Gauge, name); }
  set(value: u64): void { recordMetric(this.id, value); }
  add(delta: i64): void { incrementMetric(this.id, delta); }
  get(): u64 { return getMetric(this.id); }
}

export class Histogram {
  readonly id: u32;
  constructor(public readonly name: string) { this.id = defineMetric(MetricType.Histogram, name); }
  record(value: u64): void { recordMetric(this.id, value); }
}
