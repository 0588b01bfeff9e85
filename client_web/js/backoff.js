// Growing waits between attempts: each failure waits the next step, the last step repeats; reset() after a
// success starts from the first step again.
export class Backoff {
  /** @param {number[]} steps  milliseconds */
  constructor(steps) {
    this.steps = steps;
    this.failures = 0;
  }

  next() {
    const delay = this.steps[Math.min(this.failures, this.steps.length - 1)];
    this.failures += 1;
    return delay;
  }

  reset() {
    this.failures = 0;
  }
}
