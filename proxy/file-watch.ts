// Debounced watching of individual files, for config and .wasm hot reload. Directories are
// watched rather than files: editors and `cp` replace a file by rename, which a watch on the
// file itself loses after the first change.
import fs from 'node:fs';
import path from 'node:path';

export class FileWatch {
  private readonly dirs = new Map<string, fs.FSWatcher>();
  private readonly files = new Set<string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly onChange: (file: string) => void,
    private readonly debounceMs = 200,
  ) {}

  /** Watch exactly these files from now on (absolute paths); others are forgotten. */
  set(files: Iterable<string>): void {
    this.files.clear();
    for (const f of files) this.files.add(path.resolve(f));
    const wanted = new Set([...this.files].map((f) => path.dirname(f)));
    for (const [dir, w] of this.dirs) {
      if (!wanted.has(dir)) {
        w.close();
        this.dirs.delete(dir);
      }
    }
    for (const dir of wanted) {
      if (this.dirs.has(dir)) continue;
      try {
        const w = fs.watch(dir, (_event, name) => {
          if (name === null) return;
          const file = path.join(dir, name.toString());
          if (this.files.has(file)) this.bump(file);
        });
        w.unref();
        this.dirs.set(dir, w);
      } catch {
        // A directory that does not exist (yet) is simply not watched.
      }
    }
  }

  private bump(file: string): void {
    const t = this.timers.get(file);
    if (t !== undefined) clearTimeout(t);
    this.timers.set(
      file,
      setTimeout(() => {
        this.timers.delete(file);
        this.onChange(file);
      }, this.debounceMs),
    );
  }

  close(): void {
    for (const w of this.dirs.values()) w.close();
    this.dirs.clear();
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.files.clear();
  }
}
