import { describe, expect, it } from 'vitest';
import { differs, gridCapacity, viewOf } from './tiles';

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

  it('counts the tiles a grid has room for', () => {
    const box = { width: 1000, height: 600, columnGap: 10, rowGap: 10, minTile: 280, screens: [] };
    // Three columns of 326.7 px (183.75 px high): three rows.
    expect(gridCapacity(box)).toBe(9);
    // A screen of 300 px takes a row of its own: one row of cameras fits below it.
    expect(gridCapacity({ ...box, screens: [300] })).toBe(1 + 3);
    // A phone: one column, and always at least one row.
    expect(gridCapacity({ ...box, width: 200, height: 100, minTile: 160 })).toBe(1);
    expect(gridCapacity({ ...box, width: 360, height: 700, minTile: 160 })).toBe(2 * 6);
    expect(gridCapacity({ ...box, width: 0, height: 0 })).toBe(Number.POSITIVE_INFINITY);
  });
});
