/**
 * Says loudly when the PostgreSQL half of the suite is skipped; where EDM_REQUIRE_POSTGRES=1
 * (CI sets it), a skip is a failure.
 */
export default function setup(): void {
  if (process.env.EDM_TEST_DATABASE_URL) return;
  const banner = [
    '',
    '################################################################################',
    '#  PostgreSQL half of the suite SKIPPED: EDM_TEST_DATABASE_URL is not set.     #',
    '#  Set it (e.g. postgres://postgres@127.0.0.1:5432/test) to run both stores.   #',
    '################################################################################',
    '',
  ].join('\n');
  process.stderr.write(banner);
  if (process.env.EDM_REQUIRE_POSTGRES === '1') {
    throw new Error(
      'EDM_REQUIRE_POSTGRES=1 but EDM_TEST_DATABASE_URL is not set: the PostgreSQL half would be skipped',
    );
  }
}
