/**
 * The exit status a command asks for (a command's handler returns nothing).
 *
 * @internal
 */
import { Context } from "effect"
import type { Ref } from "effect"

/** Where a command leaves the process exit status it wants. */
export class ExitStatus extends Context.Tag("@flexec/cli/ExitStatus")<ExitStatus, Ref.Ref<number>>() {}
