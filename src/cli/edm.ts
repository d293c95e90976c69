import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import {
  chmodSync,
  createWriteStream,
  lstatSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  type Stats,
  statSync,
} from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { sql } from 'kysely';
import { claimProblem, DEV_SUB, DEV_TENANT, MAX_TOKEN_TTL_S, mintToken, parseTtl } from '../core/auth.js';
import { type Config, describeConfig, loadConfig, storeError, syncToDisk } from '../core/config.js';
import { ServerKeys } from '../core/secrets.js';
import { buildApp } from '../http/app.js';
import { modules } from '../modules/index.js';
import { openStore, type Store, type StoreOptions, storeOptions } from '../store/database.js';
import {
  isUnmigrated,
  migrate,
  recordSecretFingerprint,
  searchPathProblem,
  servedSecretFingerprint,
  takesWrites,
} from '../store/schema.js';
import { seedDemo } from './seed.js';
import { exportCsv, exportJson, importRows, TransferError, type TransferOptions } from './transfer.js';

/** Each command's usage, in the order `edm help` lists them (a usage error prints its command's). */
const COMMANDS: Record<string, string> = {
  serve: `edm serve [--no-migrate]       serve the API (PORT, EDM_DATABASE_URL, … from the environment);
                               migrates at start unless --no-migrate or EDM_AUTO_MIGRATE=0`,
  token: `edm token --tenant T --sub S [--app A] [--scope "okr:read okr:write"] [--ttl 1h]
                               print a JWT signed with the configured or generated secret`,
  migrate: `edm migrate                    create or upgrade the database schema (safe twice, or from two
                               processes at once); postgres://…?schema=NAME targets a schema`,
  seed: `edm seed [--tenant dev] [--sub S] [--force]
                               write demo data (a cycle, objectives, key results with weeks of
                               check-ins) into a tenant; the default is the Playground's dev
                               token's tenant; refuses a tenant that has data, unless --force`,
  export: `edm export --tenant T [--out FILE] [--format json|csv] [--resource NAME] [--include-deleted]
                               write a tenant's rows as JSON (every resource, or one) or CSV
                               (one); to stdout unless --out`,
  import: `edm import FILE --tenant T [--format json|csv] [--resource NAME] [--sub edm-import]
                               create the rows of an export (or a CSV of one resource) in a
                               tenant, in one transaction: an invalid row writes nothing;
                               --resource imports only that resource's rows of a JSON export;
                               --sub is the writer the rows name`,
  help: `edm help [COMMAND]             every command's usage, or COMMAND's (as edm COMMAND --help
                               or -h prints it)`,
};

const USAGE = `edm — the EDM API platform

Usage:
${Object.values(COMMANDS)
  .map((text) => `  ${text.replaceAll('\n', '\n  ')}\n`)
  .join('')}`;

/** One command's usage, its lines under the first. */
const usageOf = (command: string) => `Usage: ${COMMANDS[command].replaceAll('\n', '\n       ')}\n`;

/** A command line a command cannot run: exit code 2, with the command's usage. */
class UsageError extends Error {}

/** An error of `parseArgs` (an unknown option, a missing value, an unexpected argument): a usage error. */
const isArgsError = (err: unknown) =>
  err instanceof TypeError && String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS_');

/** Whether the arguments ask for help (`--help` or `-h`, before any `--`). */
function asksHelp(args: string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/**
 * EDM_LOG: on (unset, 1, true, on, info) logs every request; `warn` or `error` only warnings and
 * errors; off (0, false, off) nothing at all, for benchmarks.
 */
function logSetting(raw: string | undefined): boolean | 'info' | 'warn' | 'error' {
  const value = raw?.trim().toLowerCase() || 'info';
  if (['1', 'true', 'on', 'info'].includes(value)) return 'info';
  if (value === 'warn' || value === 'error') return value;
  if (['0', 'false', 'off'].includes(value)) return false;
  throw new Error(`EDM_LOG must be on (1, true, on, info), warn, error, or off (0, false, off), not ${raw}`);
}

/**
 * How long a stopping server keeps the connections its clients keep alive, answering a request
 * that comes on one 503 (Connection: close), before it ends those still idle (see Fastify's drain
 * in app.ts). Over sooner once none is left.
 */
const DRAIN_GRACE_MS = 1000;

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { 'no-migrate': { type: 'boolean' } }, strict: true });
  // Read before the configuration, which may generate secrets: a refused start writes nothing.
  const logger = logSetting(process.env.EDM_LOG);
  const migrate = values['no-migrate'] ? false : undefined;
  const config = loadConfig(process.env, { serving: { migrate } });
  // Local mode's dev-token endpoint mints tokens for anyone who can connect: loopback only.
  const host = process.env.HOST?.trim();
  if (config.localMode && host && host !== config.host) {
    process.stderr.write(
      `edm serve: local mode (no EDM_JWT_SECRET, EDM_JWT_PUBLIC_KEY or EDM_JWKS_URL) listens on ${config.host} only; HOST=${host} is ignored\n`,
    );
  }
  const app = await buildApp({
    config,
    logger,
    ...(migrate === false ? { migrate } : {}),
  });
  let stopping = false;
  const stop = async (signal: NodeJS.Signals) => {
    // A signal again while stopping (a supervisor that signals the process and its group) is
    // no second stop: once, the process ended by the signal itself, its WAL left behind. A
    // second Ctrl-C is someone who will not wait: the process ends at once.
    if (stopping) {
      if (signal === 'SIGINT') process.exit(130);
      app.log.warn(`${signal} while stopping: the stop goes on`);
      return;
    }
    stopping = true;
    app.log.info(`${signal}: stopping (no new connection; the requests in flight answered)`);
    await app.drain(DRAIN_GRACE_MS);
    // A connection whose request was in flight is closed once its answer is sent: a client that
    // keeps it alive would hold the process up to the keep-alive timeout (72 s), past a typical
    // grace period (and a SQLite store's WAL would not be removed).
    const idle = setInterval(() => app.server.closeIdleConnections(), 50);
    await app.close();
    clearInterval(idle);
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (err) {
    // A port in use: close what the app opened (the store, its timers), or the process runs on.
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await app.close();
    throw new Error(`listening on ${config.host}:${config.port} (HOST, PORT): ${(err as Error).message}`, {
      cause: err,
    });
  }
  app.log.info(describeConfig(config));
  if (config.localMode) {
    app.log.info(`local mode: generated secrets in ${config.dataDir}; bound to ${config.host} only`);
  }
  return new Promise<number>(() => {});
}

/** A tenant, subject or application given to a command: one a token can carry (`claimProblem`). */
function checkClaimOption(option: string, value: string | undefined): void {
  const problem = value === undefined ? null : claimProblem(value);
  if (problem) throw new UsageError(`${option} ${problem}`);
}

async function token(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      tenant: { type: 'string' },
      sub: { type: 'string' },
      app: { type: 'string' },
      scope: { type: 'string' },
      ttl: { type: 'string', default: '1h' },
    },
    strict: true,
  });
  if (!values.tenant || !values.sub) throw new UsageError('--tenant and --sub are required');
  checkClaimOption('--tenant', values.tenant);
  checkClaimOption('--sub', values.sub);
  checkClaimOption('--app', values.app);
  // Checked before anything is read or generated: a token that could not be used is no token.
  let ttl: number;
  try {
    ttl = parseTtl(values.ttl ?? '1h');
  } catch (err) {
    throw new UsageError(`--ttl: ${(err as Error).message}`);
  }
  if (ttl < 1) throw new UsageError('--ttl must be at least 1 second (a token of 0 s is expired when minted)');
  // A token that outlives every key rotation is a leaked credential waiting: ten years at most
  // (and a longer one's `exp` ran past 2^53, which no verifier reads as a number).
  if (ttl > MAX_TOKEN_TTL_S) throw new UsageError('--ttl must be at most 3650d (ten years)');
  // An empty --app (an unset variable) would mint a person's token, which sees every app's rows.
  if (values.app !== undefined && values.app.trim() === '') {
    throw new UsageError(
      "--app is empty: give the application's id, or leave the option out for a person's token (it sees every app's rows)",
    );
  }
  // An empty --scope (an unset variable) would mint a token without scope: full access.
  if (values.scope !== undefined && values.scope.trim() === '') {
    throw new UsageError(
      '--scope is empty: give the scopes (e.g. "okr:read"), or leave the option out for full access',
    );
  }
  // A misspelt scope (okr:raed) would mint a token refused everywhere (403), or, beside a good
  // one, a token of less access than meant: the server knows its modules' scopes, so does this.
  if (values.scope !== undefined) {
    const known = modules.flatMap((m) => [`${m.name}:read`, `${m.name}:write`]);
    const unknown = values.scope.split(' ').filter((s) => s !== '' && !known.includes(s));
    if (unknown.length > 0) {
      throw new UsageError(`--scope: unknown scope ${unknown.join(', ')} (the scopes are ${known.join(', ')})`);
    }
  }
  const config = loadConfig();
  if (!config.acceptSecret) {
    throw new Error(
      'the server accepts only tokens signed by EDM_JWT_PUBLIC_KEY or EDM_JWKS_URL, not the HS256 tokens this command signs (set EDM_JWT_SECRET to accept them too)',
    );
  }
  const jwt = await mintToken({
    secret: config.jwtSecret,
    tenant: values.tenant,
    sub: values.sub,
    app: values.app,
    scope: values.scope,
    ttl,
    issuer: config.jwtIssuer,
    audience: config.jwtAudience,
  });
  process.stdout.write(`${jwt}\n`);
  return 0;
}

/**
 * The configured store, open and answering, and for a command that writes, taking writes. One
 * that cannot be opened or reached (a server down, a database or a socket that is not there, SSL
 * refused), or takes no writes, is named as `edm serve` names it, its password masked, before
 * the command does anything.
 */
async function reachStore(command: string, config: Config, options: StoreOptions): Promise<Store> {
  // A store in memory is gone when the command ends: a migration or a seed into it reports a
  // success that left nothing, an export reads nothing.
  if (config.databaseUrl === 'sqlite::memory:') {
    throw new Error(
      `EDM_DATABASE_URL: sqlite::memory: keeps nothing once edm ${command} ends; name a file (sqlite:<file>)`,
    );
  }
  let store: Store | undefined;
  try {
    store = openStore(config.databaseUrl, options);
    await sql`select 1`.execute(store.db);
    const wrong = await searchPathProblem(store);
    if (wrong) throw new Error(wrong);
    // A command that writes says so before it starts, as /readyz does for a server.
    if (!options.readOnly && !(await takesWrites(store))) {
      throw new Error('it takes no writes (a read-only file or file system, or a PostgreSQL standby)');
    }
    return store;
  } catch (err) {
    await store?.close().catch(() => {});
    throw storeError(config.databaseUrl, err);
  }
}

async function migrateCommand(args: string[]): Promise<number> {
  // It takes no options: one given is a usage error, not ignored while the schema is migrated.
  parseArgs({ args, options: {}, strict: true });
  const config = loadConfig();
  const store = await reachStore('migrate', config, { ...storeOptions(config), poolSize: 2 });
  try {
    await migrate(
      store,
      modules.flatMap((m) => m.resources),
    ).catch((err) => {
      throw storeError(config.databaseUrl, err);
    });
    process.stdout.write(`schema is up to date (${store.kind})\n`);
    return 0;
  } finally {
    await store.close();
  }
}

async function seedCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      tenant: { type: 'string', default: DEV_TENANT },
      sub: { type: 'string', default: DEV_SUB },
      force: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const tenant = values.tenant ?? DEV_TENANT;
  if (tenant === '') throw new UsageError('--tenant must not be empty');
  checkClaimOption('--tenant', tenant);
  checkClaimOption('--sub', values.sub);
  const config = loadConfig();
  const store = await reachStore('seed', config, { ...storeOptions(config), poolSize: 2 });
  try {
    const summary = await seedDemo({
      store,
      modules,
      tenant,
      sub: values.sub || DEV_SUB,
      secretKey: config.secretKey,
      force: values.force,
    });
    process.stdout.write(`seeded tenant ${tenant} (${store.kind}): ${listed(summary)}\n`);
    return 0;
  } finally {
    await store.close();
  }
}

/** A progress bar on stderr when it is a terminal, redrawn at most every 100 ms. */
function progressBar(): ((label: string, done: number, total: number) => void) & { end(): void } {
  let last = 0;
  let shown = false;
  const bar = (label: string, done: number, total: number) => {
    if (!process.stderr.isTTY) return;
    const t = Date.now();
    if (t - last < 100 && done < total) return;
    last = t;
    shown = true;
    const width = 30;
    const filled = total > 0 ? Math.round((Math.min(done, total) / total) * width) : width;
    process.stderr.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}\x1b[K`);
  };
  return Object.assign(bar, {
    end() {
      if (shown) process.stderr.write('\n');
      shown = false;
    },
  });
}

/** `{ Cycle: 1, KeyResult: 8 }` as `1 Cycle, 8 KeyResult`. */
const listed = (counts: Record<string, number>) =>
  Object.entries(counts)
    .map(([name, n]) => `${n} ${name}`)
    .join(', ');

function formatOf(value: string | undefined, file: string | undefined): 'json' | 'csv' {
  const format = value ?? (file?.toLowerCase().endsWith('.csv') ? 'csv' : 'json');
  if (format !== 'json' && format !== 'csv') throw new UsageError(`--format must be json or csv, not ${format}`);
  return format;
}

/**
 * The options of an export or an import that can be judged before anything opens: the format
 * (from `--format`, else the file's name), a CSV's `--resource`, and that resource's name.
 */
function checkTransferOptions(values: Record<string, string | boolean | undefined>, file: string | undefined): void {
  const format = formatOf(values.format as string | undefined, file);
  const resource = values.resource as string | undefined;
  if (format === 'csv' && !resource) {
    // Said of what the user gave: the option, or the file's name the format was read from.
    const csv = values.format ? '--format csv' : `${file} (a CSV, by its name)`;
    throw new UsageError(`${csv} needs --resource (one resource per CSV)`);
  }
  const names = modules.flatMap((m) => m.resources.map((r) => r.name));
  if (resource !== undefined && !names.includes(resource)) {
    throw new UsageError(`no resource ${resource}: one of ${names.join(', ')}`);
  }
}

/**
 * Refuses to write with a server secret other than the one the database was last served with
 * (the fingerprint a server records at start, recordSecretFingerprint): the webhook URLs it signs
 * would be refused, the connector secrets it seals read as none. A database never served (or not
 * yet migrated) has none recorded: anything goes.
 */
async function checkServedSecret(store: Store, secretKey: Uint8Array): Promise<void> {
  let served: string | null;
  try {
    served = await servedSecretFingerprint(store.db);
  } catch (err) {
    if (isUnmigrated(err)) return;
    throw err;
  }
  if (served !== null && served !== new ServerKeys(secretKey).fingerprint) {
    throw new TransferError(
      "the server secret (EDM_SECRET_KEY, else EDM_DATA_DIR's secret-key file) is not the one this database was last served with: the server would refuse the webhook URLs this import signs, and read the connector secrets it seals as none. Use the server's: its EDM_SECRET_KEY, or the EDM_DATA_DIR it generated its secret-key file in; nothing was imported",
    );
  }
}

/** The options of each transfer command: an option the other one takes is a usage error here. */
const TRANSFER_OPTIONS = {
  export: {
    tenant: { type: 'string' },
    out: { type: 'string' },
    format: { type: 'string' },
    resource: { type: 'string' },
    'include-deleted': { type: 'boolean', default: false },
  },
  import: {
    tenant: { type: 'string' },
    sub: { type: 'string', default: 'edm-import' },
    format: { type: 'string' },
    resource: { type: 'string' },
  },
} as const;

async function transfer<P>(
  args: string[],
  /** export takes no FILE argument; import takes one. */
  command: keyof typeof TRANSFER_OPTIONS,
  /** What needs no store (reading FILE): done before the store is opened, so a failure there opens none. */
  prepare: (values: Record<string, string | boolean | undefined>, positionals: string[]) => P,
  work: (o: {
    values: Record<string, string | boolean | undefined>;
    prepared: P;
    /** The store, the modules, the tenant, the writer and the progress bar, for transfer.ts. */
    base: TransferOptions;
  }) => Promise<string>,
): Promise<number> {
  const options: ParseArgsConfig['options'] = TRANSFER_OPTIONS[command];
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, allowPositionals: true, options, strict: true });
  } catch (err) {
    // An option of the other transfer command is named as such, not as one that does not exist.
    const other = command === 'import' ? 'export' : 'import';
    const name = /^Unknown option '--([\w-]+)'/.exec((err as Error).message)?.[1];
    if (name && name in TRANSFER_OPTIONS[other]) {
      throw new UsageError(`--${name} is an option of edm ${other}, not of edm ${command}`);
    }
    throw err;
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const { positionals } = parsed;
  const files = command === 'import' ? 1 : 0;
  if (typeof values.tenant !== 'string' || values.tenant === '') throw new UsageError('--tenant is required');
  checkClaimOption('--tenant', values.tenant);
  checkClaimOption('--sub', values.sub as string | undefined);
  if (files === 1 && positionals.length !== 1)
    throw new UsageError('name one file to import: edm import FILE --tenant T');
  if (files === 0 && positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
  // An empty --out (a variable unset in a script) is not "standard output": the export, webhook
  // URLs included, would land in the script's log.
  if (values.out === '') throw new UsageError('--out needs a file name (leave --out out to write to standard output)');
  checkTransferOptions(values, files === 1 ? positionals[0] : (values.out as string | undefined));
  const prepared = prepare(values, positionals);
  // An export reads: a SQLite file that is not there is said so, not created empty, and before
  // any secret is generated beside it.
  const config = loadConfig(process.env, { storeMustExist: command === 'export' });
  const store = await reachStore(command, config, {
    ...storeOptions(config),
    poolSize: 2,
    readOnly: command === 'export',
  });
  const progress = progressBar();
  try {
    // Before anything is written (an import migrates first): the secret it signs with is the server's.
    if (command === 'import') await checkServedSecret(store, config.secretKey);
    const base: TransferOptions = {
      store,
      modules,
      tenant: values.tenant,
      sub: (values.sub as string | undefined) || 'edm-import', // an empty --sub is the default, as for `edm seed`
      secretKey: config.secretKey,
      progress,
    };
    const report = await work({ values, prepared, base }).catch((err: unknown) => {
      // A store without the schema: said of the store, named as a store it cannot open is.
      throw err instanceof TransferError && isUnmigrated(err.cause) ? storeError(config.databaseUrl, err) : err;
    });
    progress.end();
    process.stderr.write(`${report}\n`);
    return 0;
  } finally {
    progress.end();
    await store.close();
  }
}

function exportCommand(args: string[]): Promise<number> {
  return transfer(
    args,
    'export',
    () => null,
    async ({ values, base }) => {
      const out = values.out as string | undefined;
      const format = formatOf(values.format as string | undefined, out);
      const resource = values.resource as string | undefined;
      // What --out names: a link is followed (the file it names is written, the link stays); a
      // folder is refused, before any work; a pipe or a device is written to as it is.
      let target = out;
      let existing: Stats | null = null;
      if (out && lstatSync(out, { throwIfNoEntry: false })) {
        try {
          target = realpathSync(out);
        } catch {
          throw new TransferError(`--out ${out} is a link to a file that does not exist`);
        }
        existing = statSync(target);
        if (existing.isDirectory())
          throw new TransferError(`--out ${out} is a folder: name a file to write (in it, say)`);
      }
      const direct = existing !== null && !existing.isFile();
      // A file appears under its name only when the export is whole: written beside it, then renamed.
      // The name is this export's own: two exports to one --out never write into one file. A new
      // file is readable by its owner only (an export holds webhook URLs, which are credentials);
      // a file replaced keeps its mode.
      const partial = target && !direct ? `${target}.${process.pid}-${randomBytes(4).toString('hex')}.partial` : null;
      const mode = existing?.isFile() ? existing.mode & 0o7777 : 0o600;
      // Stopped by a signal (Ctrl-C, a service manager's TERM), the file written so far goes too,
      // as a failed export's does; then the signal takes its default course (exit 128 + its number).
      const stopped = (signal: NodeJS.Signals) => {
        unwatch();
        if (partial) rmSync(partial, { force: true });
        process.kill(process.pid, signal);
      };
      const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
      const unwatch = () => {
        for (const signal of SIGNALS) process.off(signal, stopped);
      };
      // Watched before the file is made: a signal in between would leave it.
      if (partial) for (const signal of SIGNALS) process.on(signal, stopped);
      const stream = partial
        ? // Its owner's alone while written (and read again to be synced); a replaced file's mode after.
          createWriteStream(partial, { flags: 'wx', mode: 0o600 })
        : direct
          ? createWriteStream(target as string, { flags: 'w' })
          : process.stdout;
      // A file that cannot be written (a missing folder, no permission) fails here, saying why.
      if (stream !== process.stdout) {
        try {
          await once(stream, 'open');
        } catch (err) {
          const code = (err as { code?: string }).code ?? (err as Error).message;
          const why = code === 'ENOENT' ? 'its folder does not exist' : 'it cannot be written here';
          unwatch();
          throw new TransferError(`--out ${out}: ${why} (${code})`);
        }
      }
      const write = async (chunk: string) => {
        if (!stream.write(chunk)) await once(stream, 'drain');
      };
      const o = { ...base, resource, includeDeleted: values['include-deleted'] === true };
      const closed = async () => {
        if (stream === process.stdout || stream.closed) return;
        stream.end();
        await once(stream, 'close');
      };
      let counts: Record<string, number>;
      try {
        counts =
          format === 'csv'
            ? { [resource as string]: await exportCsv({ ...o, resource: resource as string }, write) }
            : await exportJson(o, write);
      } catch (err) {
        await closed();
        if (partial) rmSync(partial, { force: true });
        unwatch();
        throw err;
      }
      await closed();
      try {
        if (partial) {
          // Its bytes on the disk before it replaces the file there (an earlier export, say),
          // and the rename after: a power cut could leave an empty file in its place. (Synced
          // before it takes the replaced file's mode, which may not let it be opened.)
          syncToDisk(partial, 'file');
          // The replaced file's mode, as it was (not narrowed by the umask).
          if (existing) chmodSync(partial, mode);
          renameSync(partial, target as string);
          syncToDisk(dirname(resolve(target as string)), 'folder');
        }
      } catch (err) {
        // `--out` names a folder, say: the export stays whole nowhere, as a failed one does.
        if (partial) rmSync(partial, { force: true });
        throw err;
      } finally {
        unwatch();
      }
      return `exported tenant ${base.tenant} (${base.store.kind}): ${listed(counts)}${out ? ` to ${out}` : ''}`;
    },
  );
}

/** FILE's text; one that cannot be read is said in one line naming it (a folder was a raw EISDIR). */
function readImportFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'EISDIR') throw new TransferError(`${file} is a folder: name the file to import`);
    if (code === 'ENOENT') throw new TransferError(`${file} does not exist (ENOENT)`);
    // An import reads its file whole, as one text: Node holds at most ~512 MiB in one.
    if (code === 'ERR_STRING_TOO_LONG') {
      throw new TransferError(
        `${file} is too large to import whole (${Math.round(statSync(file).size / 2 ** 20)} MiB; an import reads at most ~512 MiB): export and import the tenant a resource at a time (--resource), each file under that`,
      );
    }
    throw new TransferError(`${file} cannot be read (${code ?? (err as Error).message})`);
  }
}

function importCommand(args: string[]): Promise<number> {
  return transfer(
    args,
    'import',
    // The file is read first: one that cannot be read or parsed opens (and creates) no store.
    (values, positionals) => {
      const file = positionals[0] as string;
      const format = formatOf(values.format as string | undefined, file);
      const text = readImportFile(file);
      const resource = values.resource as string | undefined;
      if (format === 'csv') return { csv: text, resource: resource as string }; // checkTransferOptions: a CSV names it
      try {
        return { json: JSON.parse(text) as unknown, resource };
      } catch (err) {
        throw new TransferError(`${file} is not JSON: ${(err as Error).message}`);
      }
    },
    async ({ prepared, base }) => {
      const counts = await importRows(base, prepared);
      // Into a database no server has served yet: the secret it signed and sealed with is recorded
      // as a server's is, so a server (or an import) started later with another one is told.
      const fingerprint = new ServerKeys(base.secretKey).fingerprint;
      if ((await servedSecretFingerprint(base.store.db)) === null)
        await recordSecretFingerprint(base.store.db, fingerprint);
      return `imported into tenant ${base.tenant} (${base.store.kind}): ${listed(counts) || 'nothing'}`;
    },
  );
}

/**
 * The `edm` command line; answers the exit code: 0 (`edm COMMAND --help` too), 2 for a usage
 * error (an unknown option or argument, a missing value: the message and the command's usage),
 * 1 for anything that stopped a command (a refusal such as `SeedRefused` or `TransferError`, or
 * a failure), with its message on stderr.
 */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== undefined && Object.hasOwn(COMMANDS, command) && asksHelp(rest)) {
    process.stdout.write(usageOf(command));
    return 0;
  }
  try {
    switch (command) {
      case 'serve':
        return await serve(rest);
      case 'token':
        return await token(rest);
      case 'migrate':
        return await migrateCommand(rest);
      case 'seed':
        return await seedCommand(rest);
      case 'export':
        return await exportCommand(rest);
      case 'import':
        return await importCommand(rest);
      case 'help': {
        // `edm help export` is `edm export --help`; a command that does not exist is a usage error.
        const [topic, ...more] = rest;
        if (topic === undefined) {
          process.stdout.write(USAGE);
          return 0;
        }
        if (more.length > 0 || !Object.hasOwn(COMMANDS, topic)) {
          const what = more.length > 0 ? `unexpected argument ${more[0]}` : `no command ${topic}`;
          process.stderr.write(`edm help: ${what}\n\n${USAGE}`);
          return 2;
        }
        process.stdout.write(usageOf(topic));
        return 0;
      }
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return 0;
      case undefined:
        // No command is a usage error: said where errors go, not into a pipe reading stdout.
        process.stderr.write(`edm: no command given\n\n${USAGE}`);
        return 2;
      default:
        process.stderr.write(`edm: unknown command ${command}\n\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    if (err instanceof UsageError || isArgsError(err)) {
      process.stderr.write(`edm ${command}: ${(err as Error).message}\n\n${usageOf(command)}`);
      return 2;
    }
    process.stderr.write(`edm ${command}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
