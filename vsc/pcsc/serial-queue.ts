// Runs async tasks one after another. A card answers one command at a time, and a T=0 exchange
// may take several card APDUs (Le retry, GET RESPONSE) that must not interleave with another's.

export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    // The chain continues whatever this task's outcome; its caller sees the rejection.
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
