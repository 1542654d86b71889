/**
 * Read (refresh) returns inputs as well as outputs, as the SDK 3.248 plugin allows
 * (cmd/dynamic-provider read: `result.inputs` → ReadResponse.inputs): the inputs as the host has
 * them now, so after a refresh that found drift the next `up` shows the property that differs
 * (`~ systemPath`), not an update without a diff. Outputs are the inputs plus what the operation
 * found; the one input outputs change is `connection` (host keys pinned at first contact), so the
 * connection as given is recorded beside it (`__inputConnection`, a secret, hidden from displays
 * as every `__` key is) and given back. States recorded before it existed get no inputs (the
 * engine keeps theirs). Not for keys: their content is never an output, so a key's drift (its
 * digest) has no input to show.
 */

/** A resource kind's handlers (as the serialized provider calls them). */
type Handlers = {
  create?: (inputs: any) => any;
  update?: (id: string, olds: any, news: any) => any;
  read?: (id: string, props: any) => any;
  [k: string]: unknown;
};

/** The output key holding the connection as the program gave it. */
export const INPUT_CONNECTION = "__inputConnection";

/** `outs` with the given connection recorded beside the pinned one. */
const recordGiven = (outs: Record<string, unknown> | undefined, given: unknown): Record<string, unknown> | undefined =>
  outs && given !== undefined ? { ...outs, [INPUT_CONNECTION]: given } : outs;

/** The handlers with inputs given back by read; `outputOnly`: the keys outputs add to the inputs. */
export function withReadInputs<H extends Handlers>(outputOnly: string[], h: H): H {
  const out: Handlers = { ...h };
  if (h.create) out.create = async (i) => { const r = await h.create!(i); return { ...r, outs: recordGiven(r?.outs, i?.connection) }; };
  if (h.update) out.update = async (id, o, n) => { const r = await h.update!(id, o, n); return { ...r, outs: recordGiven(r?.outs, n?.connection) }; };
  if (h.read) {
    out.read = async (id, props) => {
      const r = await h.read!(id, props);
      const given = props?.[INPUT_CONNECTION];
      if (!r?.props || given === undefined || r.inputs !== undefined) return r;
      const inputs = Object.fromEntries(Object.entries(r.props as Record<string, unknown>).filter(([k]) => k !== INPUT_CONNECTION && !outputOnly.includes(k)));
      return { ...r, props: { ...r.props, [INPUT_CONNECTION]: given }, inputs: { ...inputs, connection: given } };
    };
  }
  return out as H;
}
