// A parser of Prometheus' text exposition format (0.0.4) and the arithmetic the dashboard
// needs: sums over series, histograms summed over series, their difference between two
// scrapes, and quantiles interpolated within buckets as PromQL's histogram_quantile does.
//
//   const scrape = parse(text);
//   scrape.families.get('flowhost_runs_ended_total')   // {name, type, help, samples}
//   sumBy(scrape, 'flowhost_runs_ended_total', 'status')  // Map status -> value
//   quantile(0.99, histogram(scrape, 'flowhost_step_attempt_duration_seconds').buckets)

const SUFFIXES = {
  histogram: ['_bucket', '_sum', '_count', '_created'],
  summary: ['_sum', '_count', '_created'],
  counter: ['_total', '_created'],
  gauge: [],
  untyped: [],
  unknown: [],
  info: ['_info'],
};

/** A sample value: a float, `+Inf`, `-Inf` or `NaN`. */
export function parseValue(text) {
  const t = text.trim().toLowerCase();
  if (t === '+inf' || t === 'inf') return Infinity;
  if (t === '-inf') return -Infinity;
  if (t === 'nan') return NaN;
  if (t === '') return NaN;
  const n = Number(text);
  return n;
}

function unescapeHelp(text) {
  return text.replace(/\\(\\|n)/g, (_, c) => (c === 'n' ? '\n' : '\\'));
}

/**
 * Parses one sample line: `name{label="value",...} value [timestamp]`. Label values may
 * hold escapes (`\\`, `\"`, `\n`) and any other character, `{`, `}`, `,` and `=` included.
 * A name may also be given quoted inside the braces (`{"my.metric", a="b"}`).
 * Returns null for a line that is not a sample.
 */
export function parseSample(line) {
  let i = 0;
  const n = line.length;
  const ws = () => { while (i < n && (line[i] === ' ' || line[i] === '\t')) i += 1; };
  const quoted = () => {
    // at a `"`: reads to the closing quote, unescaping
    i += 1;
    let out = '';
    while (i < n) {
      const c = line[i];
      if (c === '\\' && i + 1 < n) {
        const next = line[i + 1];
        out += next === 'n' ? '\n' : next === '"' ? '"' : next === '\\' ? '\\' : `\\${next}`;
        i += 2;
      } else if (c === '"') {
        i += 1;
        return out;
      } else {
        out += c;
        i += 1;
      }
    }
    throw new Error('unterminated string');
  };
  ws();
  let name = '';
  while (i < n && line[i] !== '{' && line[i] !== ' ' && line[i] !== '\t') name += line[i++];
  const labels = {};
  ws();
  if (line[i] === '{') {
    i += 1;
    for (;;) {
      ws();
      if (i >= n) throw new Error('unterminated label set');
      if (line[i] === '}') { i += 1; break; }
      let key;
      if (line[i] === '"') {
        key = quoted();
        ws();
        if (line[i] !== '=') {
          // a quoted metric name
          name = key;
          if (line[i] === ',') i += 1;
          continue;
        }
      } else {
        key = '';
        while (i < n && /[A-Za-z0-9_:.]/.test(line[i])) key += line[i++];
        if (!key) throw new Error(`bad label name at ${i}`);
        ws();
      }
      if (line[i] !== '=') throw new Error(`expected = after ${key}`);
      i += 1;
      ws();
      if (line[i] !== '"') throw new Error(`expected a quoted value for ${key}`);
      labels[key] = quoted();
      ws();
      if (line[i] === ',') i += 1;
      else if (line[i] !== '}') throw new Error(`expected , or } after ${key}`);
    }
  }
  if (!name) return null;
  ws();
  const rest = line.slice(i).trim().split(/\s+/);
  if (!rest[0]) return null;
  const value = parseValue(rest[0]);
  const sample = { name, labels, value };
  if (rest[1] !== undefined && rest[1] !== '') sample.timestamp = Number(rest[1]);
  return sample;
}

/**
 * Parses an exposition. Returns `{families, byName, errors}`: `families` maps a family name
 * to `{name, type, help, samples}` (a histogram's `_bucket`, `_sum` and `_count` samples
 * belong to it); `byName` maps each sample name to its samples; `errors` lists the lines
 * that could not be read (they are skipped).
 */
export function parse(text) {
  const families = new Map();
  const byName = new Map();
  const errors = [];
  const family = (name) => {
    let f = families.get(name);
    if (!f) {
      f = { name, type: 'untyped', help: '', samples: [] };
      families.set(name, f);
    }
    return f;
  };
  const owner = (sampleName) => {
    if (families.has(sampleName)) return families.get(sampleName);
    for (const [suffixes, type] of [[SUFFIXES.histogram, 'histogram'], [SUFFIXES.summary, 'summary'], [SUFFIXES.counter, 'counter'], [SUFFIXES.info, 'info']]) {
      for (const suffix of suffixes) {
        if (sampleName.endsWith(suffix)) {
          const base = families.get(sampleName.slice(0, -suffix.length));
          if (base && base.type === type) return base;
        }
      }
    }
    return family(sampleName);
  };
  const lines = text.split('\n');
  lines.forEach((raw, index) => {
    const line = raw.replace(/\r$/, '');
    if (!line.trim()) return;
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(line);
      if (!m) return; // a comment
      const f = family(m[2]);
      if (m[1] === 'HELP') f.help = unescapeHelp(m[3] || '');
      else f.type = (m[3] || 'untyped').trim().toLowerCase();
      return;
    }
    try {
      const sample = parseSample(line);
      if (!sample) return;
      owner(sample.name).samples.push(sample);
      let list = byName.get(sample.name);
      if (!list) byName.set(sample.name, (list = []));
      list.push(sample);
    } catch (error) {
      errors.push({ line: index + 1, text: line, error: error.message });
    }
  });
  return { families, byName, errors };
}

const matches = (labels, filter) => !filter || Object.entries(filter).every(([k, v]) => (typeof v === 'function' ? v(labels[k]) : labels[k] === v));

/** The samples named `name` whose labels match `filter` ({label: value or predicate}). */
export function samples(scrape, name, filter) {
  return (scrape.byName.get(name) || []).filter((s) => matches(s.labels, filter));
}

/** The sum of the samples named `name` (null when there is none). */
export function sum(scrape, name, filter) {
  const list = samples(scrape, name, filter);
  if (!list.length) return null;
  return list.reduce((acc, s) => acc + s.value, 0);
}

/** Sums the samples named `name` by the value of `label`: a Map. */
export function sumBy(scrape, name, label, filter) {
  const out = new Map();
  for (const s of samples(scrape, name, filter)) {
    const key = s.labels[label] ?? '';
    out.set(key, (out.get(key) || 0) + s.value);
  }
  return out;
}

/**
 * The histogram family `name` summed over its series (those matching `filter`):
 * `{buckets: [{le, count}] by le, sum, count}`, or null when it has no bucket.
 */
export function histogram(scrape, name, filter) {
  const byLe = new Map();
  for (const s of samples(scrape, `${name}_bucket`, filter)) {
    const le = parseValue(s.labels.le ?? '');
    if (Number.isNaN(le)) continue;
    byLe.set(le, (byLe.get(le) || 0) + s.value);
  }
  if (!byLe.size) return null;
  const buckets = [...byLe.entries()].sort((a, b) => a[0] - b[0]).map(([le, count]) => ({ le, count }));
  return {
    buckets,
    sum: sum(scrape, `${name}_sum`, filter) ?? 0,
    count: sum(scrape, `${name}_count`, filter) ?? (buckets.length ? buckets[buckets.length - 1].count : 0),
  };
}

/**
 * What was observed between `previous` and `current` (two results of `histogram`): the
 * difference of each bucket. A counter that went down (a restart) gives `current` whole.
 */
export function histogramDelta(current, previous) {
  if (!current) return null;
  if (!previous) return current;
  const before = new Map(previous.buckets.map((b) => [b.le, b.count]));
  const buckets = [];
  for (const b of current.buckets) {
    const delta = b.count - (before.get(b.le) || 0);
    if (delta < 0) return current;
    buckets.push({ le: b.le, count: delta });
  }
  const count = current.count - previous.count;
  if (count < 0) return current;
  return { buckets, sum: current.sum - previous.sum, count };
}

/**
 * The `q`-quantile of cumulative `buckets` ([{le, count}]), as PromQL's histogram_quantile:
 * linear interpolation within the bucket the rank falls in, the lowest bucket starting at
 * 0, a rank in the +Inf bucket answered with the highest finite bound. NaN with no
 * observation or without a +Inf bucket.
 */
export function quantile(q, buckets) {
  if (Number.isNaN(q)) return NaN;
  if (q < 0) return -Infinity;
  if (q > 1) return Infinity;
  if (!buckets || buckets.length < 2) return NaN;
  const sorted = [...buckets].sort((a, b) => a.le - b.le);
  // coalesce equal bounds, keep counts monotonic
  const bs = [];
  for (const b of sorted) {
    if (bs.length && bs[bs.length - 1].le === b.le) bs[bs.length - 1].count += b.count;
    else bs.push({ le: b.le, count: b.count });
  }
  for (let i = 1; i < bs.length; i += 1) if (bs[i].count < bs[i - 1].count) bs[i].count = bs[i - 1].count;
  if (bs[bs.length - 1].le !== Infinity) return NaN;
  if (bs.length < 2) return NaN;
  const observations = bs[bs.length - 1].count;
  if (observations === 0) return NaN;
  let rank = q * observations;
  let b = bs.findIndex((x) => x.count >= rank);
  if (b < 0) b = bs.length - 1;
  if (b === bs.length - 1) return bs[bs.length - 2].le;
  if (b === 0 && bs[0].le <= 0) return bs[0].le;
  let start = 0;
  const end = bs[b].le;
  let count = bs[b].count;
  if (b > 0) {
    start = bs[b - 1].le;
    count -= bs[b - 1].count;
    rank -= bs[b - 1].count;
  }
  return start + (end - start) * (rank / count);
}

/** The increase of a counter between two values; a reset counts from zero. */
export function increase(current, previous) {
  if (current === null || current === undefined) return 0;
  if (previous === null || previous === undefined) return 0;
  return current >= previous ? current - previous : current;
}
