/**
 * The `flexec` executable.
 *
 * @since 0.1.0
 */
import { runMain } from "./index.js"

runMain()
