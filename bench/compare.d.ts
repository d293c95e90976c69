// Types for bench/compare.js, for the tests that import it (the bench itself is plain JavaScript).
export interface Row {
  scenario: string;
  store?: string;
  ratio: number;
  target?: number;
  met?: boolean;
  errors?: number;
  bare_errors?: number;
  cpu_us?: number;
  bare_cpu_us?: number;
  baseline_ratio?: number | null;
  vs_baseline?: number | null;
  cpu_vs_baseline?: number | null;
  regressed?: boolean;
}
export interface Machine {
  bare_cpu_factor: number | null;
  same_machine: boolean;
}
export const SAME_MACHINE: number;
export function median(values: number[]): number;
export function compareWithBaseline(rows: Row[], baselineRows: Row[]): Machine;
export function formatDelta(row: Row): string;
export function machineNote(machine: Machine, baselineFile: string): string | null;
export interface Run {
  rows: Row[];
  checks: { check: string; first?: number | null; [key: string]: unknown }[];
  [key: string]: unknown;
}
export function judge(rows: Row[]): void;
export function baselineOf(runs: Run[], note?: string): Run;
