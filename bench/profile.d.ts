// Types for bench/profile.js, for the tests that import it (the bench itself is plain JavaScript).
export interface Frame {
  sym: string;
  dso: string;
  /** The frame's address, in hex as perf prints it. */
  ip?: string;
}
export interface Sample {
  tid: number;
  frames: Frame[];
}
export type Shares = [string, number][];
export interface SampleSummary {
  samples: number;
  main_thread: number;
  kinds: Shares;
  layers: Shares;
  top: Shares;
}
export interface Profile extends SampleSummary {
  cpu_us: number;
  requests: number;
  per_request: Record<string, number>;
  /** Set by the bench once the row's target is known: the CPU per request that would meet it. */
  budget_us?: number;
}
export function canProfile(): boolean;
export function perfWrap(pid: number, cpu: string, dataFile: string, statFile: string): string[];
export function parseStat(text: string): Record<string, number>;
export function parseScript(text: string): Sample[];
export function jitNames(mapText: string): (address: number) => string | null;
export function renameJitFrames(samples: Sample[], mapText: string): Sample[];
export function kindOf(frames: Frame[]): string;
export function layerOf(frames: Frame[]): string;
export function summarizeSamples(samples: Sample[], mainTid: number): SampleSummary;
export function readProfile(
  dataFile: string,
  statFile: string,
  options: { pid: number; requests: number; cpuUs: number },
): Profile;
export function formatProfile(name: string, profile: Profile): string;
