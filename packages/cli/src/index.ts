/**
 * `@flexec/cli`: the `flexec` command. Not implemented yet.
 *
 * @since 0.1.0
 */
export const notYetImplemented = true as const
