// Watches the tiles that show received video and tells the SFU how each is shown (size in
// device pixels, whether any of it is on screen): it sends a hidden tile no video and a small
// tile a small simulcast layer (docs/sfu.md, "Adapting to each receiver").
import type { TrackView } from '../generated/signal';

/** What the SFU is told of one tile, compared with what it was told last. */
export function viewOf(track: string, rect: { width: number; height: number }, visible: boolean, pixelRatio: number): TrackView {
  return {
    track,
    visible,
    width: Math.max(0, Math.round(rect.width * pixelRatio)),
    height: Math.max(0, Math.round(rect.height * pixelRatio)),
  };
}

/** Whether a change is worth telling: visibility, or a size change of a tenth or more. */
export function differs(before: TrackView | undefined, after: TrackView): boolean {
  if (!before) return true;
  if (before.visible !== after.visible) return true;
  const grew = (a: number, b: number) => Math.abs(a - b) > Math.max(16, a * 0.1);
  return grew(before.height, after.height) || grew(before.width, after.width);
}

/** What decides how many tiles a grid has room for (CSS pixels). */
export interface GridBox {
  /** The grid's content box (inside its padding). */
  width: number;
  height: number;
  columnGap: number;
  rowGap: number;
  /** The narrowest a camera tile may be (the grid's `--tile-min`); tiles are 16:9. */
  minTile: number;
  /** The heights of the shared-screen tiles, each a whole row. */
  screens: number[];
}

/**
 * How many tiles fit in the grid without scrolling: the columns the grid makes of `minTile`
 * (CSS `auto-fit`), the rows of 16:9 tiles of that width that fit below the shared screens, at
 * least one row; plus the screens. Unlimited for a grid that is not laid out.
 */
export function gridCapacity(box: GridBox): number {
  // Not laid out (yet): no reason to hide anything.
  if (box.width <= 0 || box.height <= 0) return Number.POSITIVE_INFINITY;
  const columns = Math.max(1, Math.floor((box.width + box.columnGap) / (box.minTile + box.columnGap)));
  const tileHeight = (((box.width - (columns - 1) * box.columnGap) / columns) * 9) / 16;
  const free = box.height - box.screens.reduce((sum, height) => sum + height + box.rowGap, 0);
  const rows = tileHeight > 0 ? Math.max(1, Math.floor((free + box.rowGap) / (tileHeight + box.rowGap))) : 1;
  return box.screens.length + columns * rows;
}

/** The capacity of the grid `element` as laid out now (see `gridCapacity`). */
export function measureGrid(element: HTMLElement): number {
  const style = getComputedStyle(element);
  const px = (value: string) => Number.parseFloat(value) || 0;
  const rect = element.getBoundingClientRect();
  return gridCapacity({
    width: rect.width - px(style.paddingLeft) - px(style.paddingRight),
    height: rect.height - px(style.paddingTop) - px(style.paddingBottom),
    columnGap: px(style.columnGap),
    rowGap: px(style.rowGap),
    minTile: px(style.getPropertyValue('--tile-min')) || 280,
    screens: [...element.querySelectorAll<HTMLElement>('.tile.screen')].map((tile) => tile.getBoundingClientRect().height),
  });
}

/**
 * Watches every `[data-view]` tile under `root` (tiles come and go) and calls `report` with
 * the views that changed, at most every `debounceMs`. Returns a function that stops watching.
 */
export function watchTiles(root: Element, report: (views: TrackView[]) => void, debounceMs = 200): () => void {
  const told = new Map<string, TrackView>();
  const onScreen = new Map<Element, boolean>();
  let timer: ReturnType<typeof setTimeout> | undefined;

  const flush = () => {
    timer = undefined;
    const pageShown = document.visibilityState !== 'hidden';
    const changed: TrackView[] = [];
    const present = new Set<string>();
    for (const tile of root.querySelectorAll<HTMLElement>('[data-view]')) {
      const track = tile.dataset.view;
      if (!track) continue;
      present.add(track);
      const rect = tile.getBoundingClientRect();
      const visible = pageShown && (onScreen.get(tile) ?? true) && rect.width > 0 && rect.height > 0;
      const view = viewOf(track, rect, visible, window.devicePixelRatio || 1);
      if (differs(told.get(track), view)) {
        told.set(track, view);
        changed.push(view);
      }
    }
    // A tile that went away shows nothing (its track may come back: a camera turned off and on
    // again). Tiles the grid has no room for stay in the page, hidden, and are told above.
    for (const [track, view] of told) {
      if (present.has(track) || !view.visible) continue;
      const hidden = { ...view, visible: false };
      told.set(track, hidden);
      changed.push(hidden);
    }
    if (changed.length > 0) report(changed);
  };
  const soon = () => {
    if (timer === undefined) timer = setTimeout(flush, debounceMs);
  };

  const resizes = new ResizeObserver(soon);
  const visibility = new IntersectionObserver((entries) => {
    for (const entry of entries) onScreen.set(entry.target, entry.isIntersecting);
    soon();
  });
  const watched = new Set<Element>();
  const follow = () => {
    const now = new Set(root.querySelectorAll('[data-view]'));
    for (const tile of now) {
      if (watched.has(tile)) continue;
      watched.add(tile);
      resizes.observe(tile);
      visibility.observe(tile);
    }
    for (const tile of watched) {
      if (now.has(tile)) continue;
      watched.delete(tile);
      onScreen.delete(tile);
      resizes.unobserve(tile);
      visibility.unobserve(tile);
    }
    soon();
  };
  const tiles = new MutationObserver(follow);
  tiles.observe(root, { childList: true, subtree: true, attributes: true, attributeFilter: ['data-view'] });
  document.addEventListener('visibilitychange', soon);
  follow();
  return () => {
    clearTimeout(timer);
    tiles.disconnect();
    resizes.disconnect();
    visibility.disconnect();
    document.removeEventListener('visibilitychange', soon);
  };
}
