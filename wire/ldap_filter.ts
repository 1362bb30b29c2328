/**
 * LDAP search filters (RFC 4511 §4.5.1.7) as the LDAP front end sees them:
 * the tree the codec (ldap_codec.ts) decodes a SearchRequest's filter into.
 *
 * @module
 */

/** A decoded search filter. Values are UTF-8 text; attribute names are as the client sent them. */
export type LdapFilter =
  | { kind: "and"; filters: LdapFilter[] }
  | { kind: "or"; filters: LdapFilter[] }
  | { kind: "not"; filter: LdapFilter }
  | {
    kind: "equality" | "greaterOrEqual" | "lessOrEqual" | "approx";
    attribute: string;
    value: string;
  }
  | { kind: "substrings"; attribute: string; initial?: string; any: string[]; final?: string }
  | { kind: "present"; attribute: string }
  | {
    kind: "extensible";
    attribute?: string;
    matchingRule?: string;
    value: string;
    dnAttributes: boolean;
  };
