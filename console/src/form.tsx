// The one form of the console's editing screens: given its fields, it keeps their values,
// sends them, and shows the API's refusal in plain words with its code, or what was done.
import type { CombinedError } from "@urql/preact";
import { useRef, useState } from "preact/hooks";
import { ErrorNote } from "./ui";


export type Option = [value: string, label: string];
export type Value = string | boolean | string[];
export type Values = Record<string, Value>;
export type Field = {
  name: string;
  label: string;
  kind?: "text" | "email" | "number" | "datetime-local" | "select" | "checkbox" | "checks";
  options?: Option[];
  required?: boolean;
  min?: number;
  max?: number;
  placeholder?: string;
  /** Shown only while this holds for the form's values (e.g. the approvers for SPECIFIC_USERS). */
  when?: (values: Values) => boolean;
};
type Outcome = { error?: CombinedError } | void;

export function Form(props: {
  fields: Field[];
  initial?: Values;
  submit: string;
  done?: string;
  label?: string;
  /** Read the values after each change (filters) rather than on submit only. */
  live?: boolean;
  /** Empty the fields once done (a form that creates something, ready for the next). */
  reset?: boolean;
  onSubmit: (values: Values) => Promise<Outcome> | Outcome;
}) {
  const blank = () =>
    Object.fromEntries(
      props.fields.map((f) => [f.name, props.initial?.[f.name] ?? (f.kind === "checks" ? [] : f.kind === "checkbox" ? false : "")]),
    ) as Values;
  const [values, setValues] = useState<Values>(blank);
  const [error, setError] = useState<CombinedError | undefined>();
  const [done, setDone] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const send = async (next: Values) => {
    setBusy(true);
    const outcome = await props.onSubmit(next);
    setBusy(false);
    setError(outcome ? outcome.error : undefined);
    setDone(outcome && !outcome.error && props.done ? props.done : null);
    if (props.reset && outcome && !outcome.error) {
      latest.current = blank();
      setValues(latest.current);
    }
  };
  // The latest values, also between a change and the render it causes (a click on submit
  // right after typing must send what was typed).
  const latest = useRef(values);
  const set = (name: string, value: Value, settled = true) => {
    const next = { ...latest.current, [name]: value };
    latest.current = next;
    setValues(next);
    if (props.live && settled) void send(next);
  };
  const text = (e: Event) => (e.target as HTMLInputElement).value;
  return (
    <>
      <form
        class="panel inline"
        aria-label={props.label}
        onSubmit={(e) => {
          e.preventDefault();
          void send(latest.current);
        }}
      >
        {props.fields
          .filter((f) => !f.when || f.when(values))
          .map((f) => {
            const value = values[f.name];
            if (f.kind === "checks") {
              const chosen = value as string[];
              return (
                <fieldset key={f.name} class="checks">
                  <legend>{f.label}</legend>
                  {(f.options ?? []).length === 0 && <span class="muted">none yet</span>}
                  {(f.options ?? []).map(([v, label]) => (
                    <label key={v} class="check">
                      <input
                        type="checkbox"
                        checked={chosen.includes(v)}
                        onChange={(e) =>
                          set(f.name, (e.target as HTMLInputElement).checked ? [...chosen, v] : chosen.filter((c) => c !== v))
                        }
                      />{" "}
                      {label}
                    </label>
                  ))}
                </fieldset>
              );
            }
            if (f.kind === "checkbox") {
              return (
                <label key={f.name} class="check">
                  <input type="checkbox" checked={value as boolean} onChange={(e) => set(f.name, (e.target as HTMLInputElement).checked)} />{" "}
                  {f.label}
                </label>
              );
            }
            if (f.kind === "select") {
              return (
                <label key={f.name}>
                  {f.label}
                  <select required={f.required} value={value as string} onChange={(e) => set(f.name, text(e))}>
                    {f.placeholder !== undefined && <option value="">{f.placeholder}</option>}
                    {(f.options ?? []).map(([v, label]) => (
                      <option key={v} value={v}>
                        {label}
                      </option>
                    ))}
                  </select>
                </label>
              );
            }
            return (
              <label key={f.name}>
                {f.label}{" "}
                <input
                  type={(f.kind ?? "text") as "text"}
                  required={f.required}
                  min={f.min}
                  max={f.max}
                  placeholder={f.placeholder}
                  value={value as string}
                  onInput={(e) => set(f.name, text(e), false)}
                  onChange={(e) => set(f.name, text(e))}
                />
              </label>
            );
          })}
        <button type="submit" class={props.live ? "" : "primary"} disabled={busy}>
          {props.submit}
        </button>
      </form>
      <ErrorNote error={error} />
      {done && <p role="status">{done}</p>}
    </>
  );
}

