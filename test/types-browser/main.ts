// Compiled by test/sdk-browser-types.test.ts against the built declarations (dist), as a browser
// project compiles the SDK: DOM and ES libraries, no Node types, every declaration file checked.
import { APIError, createClient } from '../../dist/client/index.js';

const client = createClient({ baseUrl: 'https://okr.example', token: 'eyJ…' });

export async function quarter(): Promise<number> {
  const kr = await client.okr.keyResults.create({ objective_id: 'obj_x', title: 'Ship', target: 10 });
  const page = await client.okr.keyResults.list({ limit: 10 });
  try {
    await client.okr.keyResults.update(kr.id, { current: 5 }, { ifVersion: kr.version });
  } catch (err) {
    if (err instanceof APIError) return err.status ?? 0;
  }
  return page.data.length + kr.progress_pct;
}
