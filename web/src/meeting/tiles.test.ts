import { describe, expect, it } from 'vitest';
import { differs, viewOf } from './tiles';

describe('tile views', () => {
  it('counts device pixels', () => {
    expect(viewOf('t1', { width: 320.4, height: 180.2 }, true, 2)).toEqual({ track: 't1', visible: true, width: 641, height: 360 });
  });

  it('tells visibility changes and size changes of a tenth, not jitter', () => {
    const before = viewOf('t1', { width: 640, height: 360 }, true, 1);
    expect(differs(undefined, before)).toBe(true);
    expect(differs(before, { ...before, visible: false })).toBe(true);
    expect(differs(before, { ...before, height: 370, width: 655 })).toBe(false);
    expect(differs(before, { ...before, height: 180, width: 320 })).toBe(true);
    expect(differs(before, { ...before, height: 720, width: 1280 })).toBe(true);
  });
});
