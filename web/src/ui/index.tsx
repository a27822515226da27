// Shared building blocks: every control has a visible label or an accessible name, errors sit
// next to their field (and are announced), and confirmations use the native modal <dialog>,
// which traps focus and closes with Escape.
import type { AnchorHTMLAttributes, ComponentChildren } from 'preact';
import { useEffect, useId, useRef, useState } from 'preact/hooks';
import { ApiError } from '../api';
import { linkClick } from '../router';

/** An in-app link. */
export function Link(props: AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }) {
  const { href, onClick, ...rest } = props;
  return (
    <a
      href={href}
      {...rest}
      onClick={(e) => {
        if (typeof onClick === 'function') onClick(e);
        linkClick(e as unknown as MouseEvent, href);
      }}
    />
  );
}

/** The ids that tie an input to its label and its error. */
export function fieldIds(id: string, error?: string, hint?: boolean) {
  const described = [error ? `${id}-error` : '', hint ? `${id}-hint` : ''].filter(Boolean).join(' ');
  return {
    id,
    'aria-invalid': error ? ('true' as const) : undefined,
    'aria-describedby': described || undefined,
  };
}

/** A labelled field with its hint and its error right below it. */
export function Field(props: { id: string; label: ComponentChildren; error?: string; hint?: ComponentChildren; children: ComponentChildren; class?: string }) {
  return (
    <div class={`field${props.error ? ' has-error' : ''}${props.class ? ` ${props.class}` : ''}`}>
      <label for={props.id}>{props.label}</label>
      {props.children}
      {props.hint && (
        <p class="hint" id={`${props.id}-hint`}>
          {props.hint}
        </p>
      )}
      {props.error && (
        <p class="field-error" id={`${props.id}-error`} role="alert">
          {props.error}
        </p>
      )}
    </div>
  );
}

/**
 * A form's `onInput`/`onChange`: once the person changes a field in error, its message goes
 * away (the field is checked again on the next submit). `keys` maps element ids to error keys
 * where the two differ.
 */
export function clearErrorOnInput<T extends object>(setErrors: (update: (errors: T) => T) => void, keys: Record<string, string> = {}) {
  return (event: Event) => {
    const id = (event.target as HTMLElement | null)?.id;
    if (!id) return;
    const key = keys[id] ?? id;
    setErrors((errors) => ((errors as Record<string, unknown>)[key] ? { ...errors, [key]: undefined } : errors));
  };
}

/** The browser's storage, or null where it is disabled (private mode, blocked cookies). */
export function browserStorage(kind: 'localStorage' | 'sessionStorage'): Storage | null {
  try {
    return window[kind];
  } catch {
    return null;
  }
}

/** Errors of a form: per field, and one for the whole form when no field is to blame. */
export type FormErrors = Record<string, string | undefined> & { form?: string };

/**
 * Turns an API refusal into form errors. `fields` maps the API's field names to the form's
 * (unmapped API fields are shown as the form's error, so nothing is silently lost).
 */
export function formErrorsFrom(error: unknown, fields: Record<string, string> = {}): FormErrors {
  if (error instanceof ApiError) {
    if (error.field) {
      const field = fields[error.field] ?? (Object.values(fields).includes(error.field) ? error.field : undefined);
      if (field) return { [field]: sentence(error.message) };
    }
    return { form: sentence(error.message) };
  }
  return { form: error instanceof Error ? error.message : String(error) };
}

/** Starts a message with a capital and ends it with a full stop. */
export function sentence(message: string): string {
  const text = message.trim();
  if (!text) return text;
  const first = text[0].toUpperCase() + text.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

/** The form-level error. */
export function FormError(props: { error?: string }) {
  if (!props.error) return null;
  return (
    <p class="form-error" role="alert">
      {props.error}
    </p>
  );
}

/** A short confirmation ("Saved") announced to screen readers; fades after a while. */
export function Notice(props: { text?: string; onDone?: () => void }) {
  useEffect(() => {
    if (!props.text || !props.onDone) return;
    const timer = setTimeout(props.onDone, 6000);
    return () => clearTimeout(timer);
  }, [props.text]);
  return (
    <p class="notice" role="status" aria-live="polite">
      {props.text ?? ''}
    </p>
  );
}

/** A modal confirmation built on <dialog>: focus moves into it, Escape cancels. */
export function ConfirmDialog(props: {
  open: boolean;
  title: string;
  children?: ComponentChildren;
  confirmLabel: string;
  danger?: boolean;
  onConfirm: () => void;
  onCancel: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog || !props.open) return;
    // Focus goes back to what opened the dialog, whether it is closed or taken off the page.
    const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    if (!dialog.open) dialog.showModal?.();
    return () => {
      if (dialog.open) dialog.close();
      if (opener?.isConnected) opener.focus();
    };
  }, [props.open]);
  return (
    <dialog ref={ref} aria-labelledby={titleId} onCancel={(e) => { e.preventDefault(); props.onCancel(); }}>
      <h2 id={titleId}>{props.title}</h2>
      {props.children}
      <div class="actions">
        <button type="button" class={props.danger ? 'danger' : 'primary'} onClick={props.onConfirm}>
          {props.confirmLabel}
        </button>
        <button type="button" onClick={props.onCancel} autofocus>
          Cancel
        </button>
      </div>
    </dialog>
  );
}

/** Loads data for a page; `reload` fetches again. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[] = []) {
  const [state, setState] = useState<{ data?: T; error?: ApiError | Error; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ data, loading: false }),
      (error) => live && setState({ error, loading: false }),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}

/** What a page shows while loading or after a failed load. */
export function LoadState(props: { loading: boolean; error?: Error }) {
  if (props.error) return <FormError error={sentence(props.error.message)} />;
  if (props.loading) return <p aria-busy="true">Loading…</p>;
  return null;
}

/** Sets the document title for the page. */
export function useTitle(title: string) {
  useEffect(() => {
    document.title = title ? `${title} · Conclave` : 'Conclave';
  }, [title]);
}
