import { date, text } from '../../core/fields.js';
import { defineResource, fillNullDefaults } from '../../core/resource.js';
import { objectives } from './objectives.js';
import { requeueObjectives } from './sweep.js';

export const cycles = defineResource({
  module: 'okr',
  name: 'Cycle',
  path: 'cycles',
  idPrefix: 'cyc',
  // 2: `state`, `source` and `source_type` are never null (a PATCH to null gives the default);
  // builds before stored the null, which the upgrade turns into the default.
  schemaVersion: 2,
  description: 'A time box (a quarter, a half) that objectives are planned and measured in.',
  titleField: 'name',
  fields: {
    name: text({
      required: true,
      minLength: 1,
      maxLength: 200,
      example: '2026-Q4',
      notes: 'Display name of the cycle (e.g. 2026-Q4).',
    }),
    start_date: date({ required: true, example: '2026-10-01', notes: 'First day of the cycle (UTC, inclusive).' }),
    end_date: date({ required: true, example: '2026-12-31', notes: 'Last day of the cycle (UTC, inclusive).' }),
    state: text({
      enum: ['planning', 'active', 'closed', 'archived'],
      default: 'planning',
      nonNull: true,
      notes: 'Lifecycle state of the cycle.',
    }),
  },
  sortable: ['created_at', 'updated_at', 'name', 'start_date', 'end_date'],
  filterable: ['state', 'start_date', 'end_date', 'created_at', 'updated_at'],
  hooks: {
    upgrade: (doc) => fillNullDefaults(cycles, doc),
    validate(doc, before, ctx) {
      if (typeof doc.start_date === 'string' && typeof doc.end_date === 'string' && doc.end_date < doc.start_date) {
        // The member the request sent: a PATCH of start_date alone moved it past the stored end.
        const sent = (name: string) => ctx.input !== null && ctx.input[name] !== undefined;
        if (before && sent('start_date') && !sent('end_date')) {
          const message = `start_date must not be after end_date (${doc.end_date})`;
          return [{ path: '/start_date', code: 'out_of_range', message }];
        }
        return [{ path: '/end_date', code: 'out_of_range', message: 'end_date must not be before start_date' }];
      }
      return [];
    },
    async afterWrite(after, before, ctx, tx) {
      // Moved dates change every pace: re-check the cycle's key results at the next sweep.
      if (ctx.op !== 'update' || !before) return;
      if (before.start_date === after.start_date && before.end_date === after.end_date) return;
      const tenantId = after.tenant_id as string;
      const inCycle = await tx.findLive(objectives, tenantId, { cycle_id: after.id });
      await requeueObjectives(
        tx,
        tenantId,
        inCycle.map((o) => o.id as string),
      );
    },
  },
});
