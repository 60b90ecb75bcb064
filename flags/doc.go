// Package flags is cfgcluster's feature-flag evaluator: flag definitions in
// flagd's format (https://flagd.dev/reference/flag-definitions/), parsed
// and checked, with their targeting (JsonLogic and flagd's operators
// fractional, sem_ver, starts_with and ends_with, shared rules through
// $ref) compiled once into a tree of closures, and evaluated with
// OpenFeature's reasons and error codes.
//
// Semantics are flagd's, as its evaluator conformance suite defines them
// (open-feature/flagd-testbed, evaluator/; TestConformance runs it):
// STATIC for a flag without targeting, TARGETING_MATCH for the variant the
// targeting names (a fractional rollout included, as flagd answers),
// DEFAULT when it names none (the default variant, or the caller's default
// when the flag has none), DISABLED, and ERROR with FLAG_NOT_FOUND,
// PARSE_ERROR, TYPE_MISMATCH or GENERAL. fractional is flagd's v2
// bucketing: MurmurHash3 x86_32, seed 0, over the bucket key (default: the
// flag key followed by the targeting key), bucket = (hash × total weight)
// >> 32.
//
// A flag whose targeting does not compile still loads (and evaluates with
// PARSE_ERROR), as flagd loads it; Flag.Problems lists what a write must
// refuse, each with its path in the definition: a targeting that does not
// compile, a $ref that names no evaluator or loops, variants of mixed
// types, a default variant or a literal answer that is no variant, weights
// that are negative, fractional or all zero, sem_ver operators and
// versions that cannot match, wrong argument counts.
//
// The package is pure: no I/O, no goroutines. The store keeps flags as
// values and the watch client evaluates them from its cache.
package flags
