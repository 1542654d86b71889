/**
 * Errors that leave the provider through the SDK's dynamic-provider plugin. Its Delete (and Diff)
 * handler prints `${e}: ${e.stack}` to stderr before returning the error, which the user saw as a
 * full stack trace of our own code above the engine's clear `deleting failed: …` line. The stack
 * of an error passed through here is one line saying what happens next instead.
 */
export async function withoutTrace<T>(next: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    err.stack = next;
    throw err;
  }
}

/** What the user can do after a failed delete (the resource stays in the state). */
export const DELETE_FAILED = "nothing was removed; the resource stays in the state and the next destroy or up tries again";
