import type { ModuleDef } from '../core/resource.js';
import { okr } from './okr/index.js';

/** Every module the platform serves. */
export const modules = [okr] as const satisfies readonly ModuleDef[];
