import type { ModuleDef } from '../../core/resource.js';
import { cycles } from './cycles.js';
import { keyResults } from './key-results.js';
import { objectives } from './objectives.js';

export const okr: ModuleDef = {
  name: 'okr',
  description: 'Objectives and Key Results: cycles, objectives, key results and their check-ins.',
  resources: [cycles, objectives, keyResults],
};
