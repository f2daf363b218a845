/**
 * The sweep's outputs: the readable tables, JSON lines (`--json`) and CSV (`--csv`), each from
 * the rows in matrix order (sweep-matrix.ts's SweepRow).
 */

import type pc from 'picocolors';
import { COST_CAUSES, formatNs } from '../mmu/cost.js';
import { OUTCOME_NAMES } from '../mmu/vcpu.js';
import { SWEEP_AXES, sizeText } from './sweep-matrix.js';
import type { AxisValues, SweepRow } from './sweep-matrix.js';
import { s2emuVersion } from './version.js';

/** A count with thousands separators, or '' for an absent one. */
function num(n: number | undefined): string {
  return n === undefined ? '' : n.toLocaleString('en-US');
}

/** Bytes as 2M when whole, else with separators. */
function bytes(n: number): string {
  return n === 0 ? '0' : /^[0-9]+[KMGT]$/.test(sizeText(n)) ? sizeText(n) : num(n);
}

/** Short names of the fault classes for table headers. */
const CLASS_SHORT: Record<string, string> = {
  translation: 'transl',
  'access-flag': 'AF',
  permission: 'perm',
  'external-abort': 'ext',
};

/** The (class, level) pairs any row has, in FSC then level order. */
function faultColumns(rows: readonly SweepRow[]): [string, string][] {
  const seen: [string, string][] = [];
  for (const r of rows)
    for (const [cls, levels] of Object.entries(r.result?.faultsByClass ?? {}))
      for (const level of Object.keys(levels))
        if (!seen.some(([c, l]) => c === cls && l === level)) seen.push([cls, level]);
  const classOrder = Object.keys(CLASS_SHORT);
  return seen.sort(
    ([c1, l1], [c2, l2]) => classOrder.indexOf(c1) - classOrder.indexOf(c2) || l1.localeCompare(l2),
  );
}

/** The leaf sizes any row has, smallest first (`none` last). */
function leafColumns(rows: readonly SweepRow[]): string[] {
  const seen = new Set<string>();
  for (const r of rows) for (const s of Object.keys(r.result?.leafSizes ?? {})) seen.add(s);
  const key = (s: string): number => {
    const m = /^([0-9]+)([KMGT])$/.exec(s);
    return m ? Number(m[1]) * 2 ** (10 * ('KMGT'.indexOf(m[2]!) + 1)) : Infinity;
  };
  return [...seen].sort((a, b) => key(a) - key(b));
}

/** Lays out a text table: columns padded, numbers right-aligned. Returns its lines. */
function textTable(head: string[], body: string[][], right: boolean[]): string[] {
  const w = head.map((h, i) => Math.max(visible(h), ...body.map((r) => visible(r[i] ?? ''))));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => {
        const pad = ' '.repeat(w[i]! - visible(c));
        return right[i] ? pad + c : c + pad;
      })
      .join('  ')
      .trimEnd();
  return [line(head), line(w.map((x) => '-'.repeat(x))), ...body.map(line)];
}

/** Length of a string without its colour escapes. */
function visible(s: string): number {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\u001b\[[0-9;]*m/g, '').length;
}

/**
 * The readable output: the results table (outcomes, faults, maps and relaxes, TLBIs, cache
 * maintenance, modelled time), faults by class and level, modelled time by cause, the
 * leaf-size mix, then each configuration's problems. Returns the text.
 */
export function sweepTable(
  rows: readonly SweepRow[],
  axisNames: readonly string[],
  c: ReturnType<typeof pc.createColors>,
): string {
  const axisHead = axisNames.length ? [...axisNames] : ['configuration'];
  const axisCells = (r: SweepRow): string[] =>
    axisNames.length ? axisNames.map((a) => r.config[a] ?? '') : [r.label];
  const status = (r: SweepRow): string =>
    r.status === 'ok' ? c.green('ok') : r.status === 'refused' ? c.yellow('refused') : c.red(r.status);
  const ax = axisHead.map(() => false);
  const out: string[] = [];
  const head = [
    ...axisHead,
    'status',
    'accesses',
    'outcomes',
    'faults',
    'maps',
    'relaxes',
    'TLBIs',
    'D-cache',
    'I-cache',
    'modelled',
    'per access',
  ];
  const body = rows.map((r) => {
    const s = r.result;
    const outcomes = s
      ? Object.entries(s.outcomes)
          .map(([k, n]) => `${k} ${num(n)}`)
          .join(', ')
      : '';
    return [
      ...axisCells(r),
      status(r),
      num(s?.accesses),
      outcomes,
      num(s?.faults),
      num(s?.maps),
      num(s?.relaxes),
      num(s?.tlbi),
      s ? bytes(s.dcacheBytes) : '',
      s ? bytes(s.icacheBytes) : '',
      s ? formatNs(s.modelledNs) : '',
      s ? formatNs(s.modelledNs / Math.max(1, s.accesses)) : '',
    ];
  });
  out.push(
    ...textTable(head, body, [...ax, false, true, false, true, true, true, true, true, true, true, true]),
  );

  const ran = rows.filter((r) => r.result !== null);
  const fcols = faultColumns(ran);
  if (fcols.length) {
    out.push('', c.bold('Faults by class and level'));
    out.push(
      ...textTable(
        [...axisHead, ...fcols.map(([cls, l]) => `${CLASS_SHORT[cls] ?? cls} ${l}`)],
        ran.map((r) => [
          ...axisCells(r),
          ...fcols.map(([cls, l]) => num(r.result!.faultsByClass[cls]?.[l] ?? 0)),
        ]),
        [...ax, ...fcols.map(() => true)],
      ),
    );
  }
  const causes = COST_CAUSES.filter((k) => ran.some((r) => (r.result!.modelledByCause[k] ?? 0) > 0));
  if (causes.length) {
    out.push('', c.bold('Modelled time by cause'));
    out.push(
      ...textTable(
        [...axisHead, ...causes],
        ran.map((r) => [...axisCells(r), ...causes.map((k) => formatNs(r.result!.modelledByCause[k] ?? 0))]),
        [...ax, ...causes.map(() => true)],
      ),
    );
  }
  const sizes = leafColumns(ran);
  if (sizes.length) {
    out.push('', c.bold('Accesses by leaf size'));
    out.push(
      ...textTable(
        [...axisHead, ...sizes],
        ran.map((r) => [...axisCells(r), ...sizes.map((z) => num(r.result!.leafSizes[z] ?? 0))]),
        [...ax, ...sizes.map(() => true)],
      ),
    );
  }
  const troubled = rows.filter((r) => r.problems.length > 0);
  if (troubled.length) {
    out.push('', c.bold('Problems'));
    for (const r of troubled) {
      const shown = r.problems.slice(0, 4);
      out.push(`${r.label}: ${status(r)}`);
      for (const p of shown) out.push(`  ${p}`);
      if (r.problems.length > shown.length) out.push(`  (${r.problems.length - shown.length} more)`);
    }
  }
  return out.join('\n') + '\n';
}

/**
 * `--json`: one line per configuration (a SweepRow: index, config, label, status, problems,
 * result), then `{"summary": {...}}` with the file, the axes and the count of each status.
 * Returns the text.
 */
export function sweepJson(rows: readonly SweepRow[], where: string, axes: readonly AxisValues[]): string {
  const statuses: Record<string, number> = {};
  for (const r of rows) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  const summary = {
    file: where,
    axes: Object.fromEntries(
      SWEEP_AXES.filter((a) => axes.some((x) => x.axis === a)).map((a) => [
        a.name,
        axes.find((x) => x.axis === a)!.values,
      ]),
    ),
    configurations: rows.length,
    statuses,
    producer: { s2emu: s2emuVersion() },
  };
  return rows.map((r) => JSON.stringify(r)).join('\n') + '\n' + JSON.stringify({ summary }) + '\n';
}

/** One CSV field (RFC 4180 quoting when needed). */
function csvField(v: string | number): string {
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/**
 * `--csv`: a header and one line per configuration: the axes, status, problems (joined by
 * "; "), the counters, one column per outcome, per fault class and level, per leaf size and
 * per cause of modelled time (ns). Returns the text.
 */
export function sweepCsv(rows: readonly SweepRow[], axisNames: readonly string[]): string {
  const fcols = faultColumns(rows);
  const sizes = leafColumns(rows);
  const head = [
    ...axisNames,
    'label',
    'status',
    'problems',
    'accesses',
    ...OUTCOME_NAMES.map((o) => `outcome.${o}`),
    'faults',
    ...fcols.map(([cls, l]) => `faults.${cls}.${l}`),
    'maps',
    'relaxes',
    'mkyoungs',
    'tlbi',
    'dcacheBytes',
    'icacheBytes',
    'injected',
    'mmioExits',
    'tablePages',
    'memslotsRefused',
    'diagnostics',
    ...sizes.map((z) => `leaf.${z}`),
    'modelledNs',
    ...COST_CAUSES.map((k) => `ns.${k}`),
    'costModel',
  ];
  const lines = [head.map(csvField).join(',')];
  for (const r of rows) {
    const s = r.result;
    const cells: (string | number)[] = [
      ...axisNames.map((a) => r.config[a] ?? ''),
      r.label,
      r.status,
      r.problems.join('; '),
    ];
    if (s === null) {
      cells.push(...new Array<string>(head.length - cells.length).fill(''));
    } else {
      cells.push(
        s.accesses,
        ...OUTCOME_NAMES.map((o) => s.outcomes[o] ?? 0),
        s.faults,
        ...fcols.map(([cls, l]) => s.faultsByClass[cls]?.[l] ?? 0),
        s.maps,
        s.relaxes,
        s.mkyoungs,
        s.tlbi,
        s.dcacheBytes,
        s.icacheBytes,
        s.injected,
        s.mmioExits,
        s.tablePages,
        s.memslotsRefused.length,
        s.diagnostics.length,
        ...sizes.map((z) => s.leafSizes[z] ?? 0),
        s.modelledNs,
        ...COST_CAUSES.map((k) => s.modelledByCause[k] ?? 0),
        s.costModel,
      );
    }
    lines.push(cells.map(csvField).join(','));
  }
  return lines.join('\n') + '\n';
}
