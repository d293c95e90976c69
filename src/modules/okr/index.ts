import { defineModule } from '../../core/resource.js';
import { connectorSyncJob, connectors } from './connectors.js';
import { cycles } from './cycles.js';
import { okrDemo } from './demo.js';
import { keyResults } from './key-results.js';
import { objectives } from './objectives.js';
import { statusSweepJob } from './sweep.js';

export const okr = defineModule({
  name: 'okr',
  description:
    'Objectives and Key Results: cycles, objectives, key results and their check-ins, and the connectors that feed them.',
  resources: [cycles, objectives, keyResults, connectors],
  jobs: [statusSweepJob, connectorSyncJob],
  demo: okrDemo,
});
