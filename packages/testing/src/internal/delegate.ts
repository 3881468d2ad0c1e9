/**
 * `delegating`: a wrapper that keeps every member of the object it wraps, a
 * class instance's too.
 *
 * `{ ...launcher }` copies only own enumerable properties: a class-based
 * launcher (or handle) loses its prototype methods and getters, and a method
 * that reads private fields (`#state`) throws when `this` is not the instance.
 * `delegating` forwards each member, own or inherited up to `Object.prototype`,
 * to the original when it is read, methods bound to the original; the overrides
 * go on top.
 *
 * @internal
 */

type AnyFunction = (...args: Array<unknown>) => unknown

/**
 * A plain object with every member of `original` (own and inherited, except
 * `constructor`), each read from `original` when read (a method bound to it, the
 * same bound function while the method stays the same), and then `overrides`
 * (their own properties, as they are). Every member is enumerable and
 * configurable, so the result can be spread or have a member deleted.
 */
export const delegating = <T extends object>(original: T, overrides: object = {}): T => {
  const out: Record<PropertyKey, unknown> = {}
  const bound = new Map<PropertyKey, { readonly method: AnyFunction; readonly bound: AnyFunction }>()
  for (let level: object | null = original; level !== null && level !== Object.prototype; level = Object.getPrototypeOf(level)) {
    for (const key of Reflect.ownKeys(level)) {
      if (key === "constructor" || Object.prototype.hasOwnProperty.call(out, key)) continue
      Object.defineProperty(out, key, {
        enumerable: true,
        configurable: true,
        get: () => {
          const value: unknown = Reflect.get(original, key, original)
          if (typeof value !== "function") return value
          const cached = bound.get(key)
          if (cached !== undefined && cached.method === value) return cached.bound
          const fresh = (value as AnyFunction).bind(original) as AnyFunction
          bound.set(key, { method: value as AnyFunction, bound: fresh })
          return fresh
        }
      })
    }
  }
  Object.defineProperties(out, Object.getOwnPropertyDescriptors(overrides))
  return out as T
}
