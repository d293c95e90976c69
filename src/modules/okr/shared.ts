/** Values and rules shared by the OKR resources. */
export const OWNER_ID_PATTERN = '^usr-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

/** Statuses, from worst to best as objective roll-ups rank them. */
export const STATUSES = ['off_track', 'at_risk', 'on_track', 'not_started', 'achieved'] as const;

export const TAGS = { maxItems: 32, itemMinLength: 1, itemMaxLength: 64 } as const;

/** The smallest positive weight a write sets (0 leaves a key result out of its objective's progress). */
export const MIN_WEIGHT = 0.000001;
