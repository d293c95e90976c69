import { parseArgs } from 'node:util';
import { DEV_SUB, DEV_TENANT, mintToken } from '../core/auth.js';
import { loadConfig } from '../core/config.js';
import { buildApp } from '../http/app.js';
import { modules } from '../modules/index.js';
import { openStore, storeOptions } from '../store/database.js';
import { migrate } from '../store/schema.js';
import { SeedRefused, seedDemo } from './seed.js';

const USAGE = `edm — the EDM API platform

Usage:
  edm serve [--no-migrate]       serve the API (PORT, EDM_DATABASE_URL, … from the environment);
                                 migrates at start unless --no-migrate or EDM_AUTO_MIGRATE=0
  edm token --tenant T --sub S [--app A] [--scope "okr:read okr:write"] [--ttl 1h]
                                 print a JWT signed with the configured or generated secret
  edm migrate                    create or upgrade the database schema (safe twice, or from two
                                 processes at once); postgres://…?schema=NAME targets a schema
  edm seed [--tenant dev] [--sub S] [--force]
                                 write demo data (a cycle, objectives, key results with weeks of
                                 check-ins) into a tenant; the default is the Playground's dev
                                 token's tenant; refuses a tenant that has data, unless --force
  edm help                       this text
`;

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { 'no-migrate': { type: 'boolean' } }, strict: true });
  const config = loadConfig();
  const app = await buildApp({
    config,
    logger: process.env.EDM_LOG !== '0',
    ...(values['no-migrate'] ? { migrate: false } : {}),
  });
  const stop = async () => {
    await app.close();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  await app.listen({ port: config.port, host: config.host });
  if (config.localMode) {
    app.log.info(`local mode: generated secrets in ${config.dataDir}; bound to ${config.host} only`);
  }
  return new Promise<number>(() => {});
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
  if (!values.tenant || !values.sub) {
    process.stderr.write('edm token: --tenant and --sub are required\n');
    return 2;
  }
  const config = loadConfig();
  const jwt = await mintToken({
    secret: config.jwtSecret,
    tenant: values.tenant,
    sub: values.sub,
    app: values.app,
    scope: values.scope,
    ttl: values.ttl ?? '1h',
    issuer: config.jwtIssuer,
    audience: config.jwtAudience,
  });
  process.stdout.write(`${jwt}\n`);
  return 0;
}

async function migrateCommand(): Promise<number> {
  const config = loadConfig();
  const store = openStore(config.databaseUrl, { ...storeOptions(config), poolSize: 2 });
  try {
    await migrate(
      store,
      modules.flatMap((m) => m.resources),
    );
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
  if (tenant === '') {
    process.stderr.write('edm seed: --tenant must not be empty\n');
    return 2;
  }
  const config = loadConfig();
  const store = openStore(config.databaseUrl, { ...storeOptions(config), poolSize: 2 });
  try {
    const summary = await seedDemo({
      store,
      modules,
      tenant,
      sub: values.sub || DEV_SUB,
      secretKey: config.secretKey,
      force: values.force,
    });
    const counts = Object.entries(summary).map(([name, n]) => `${n} ${name}`);
    process.stdout.write(`seeded tenant ${tenant} (${store.kind}): ${counts.join(', ')}\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof SeedRefused)) throw err;
    process.stderr.write(`edm seed: ${err.message}\n`);
    return 1;
  } finally {
    await store.close();
  }
}

/** The `edm` command line; answers the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'serve':
        return await serve(rest);
      case 'token':
        return await token(rest);
      case 'migrate':
        return await migrateCommand();
      case 'seed':
        return await seedCommand(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        process.stderr.write(`edm: unknown command ${command}\n\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    process.stderr.write(`edm ${command}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
