// Read-only classification by the real Postgres grammar, for the `safe` retry policy (DESIGN.md
// section 1). Read-only means: exactly one statement, a plain SELECT / VALUES / TABLE / SHOW, or
// EXPLAIN without ANALYZE of one; no INTO, no locking clause, no data-modifying CTE, and every
// function it calls is on the allow-list below, unqualified or qualified with pg_catalog.
// Anything else, or anything that does not parse, is a write: a false "write" costs a client an
// error, a false "read-only" could apply a write twice.
//
// Not seen from the text (accepted): functions run by views, casts to user-defined types,
// user-defined operators, a function called in attribute notation (`t.f` for `f(t)`), and a
// function earlier on search_path than pg_catalog with the name of a built-in (pg_catalog is
// searched first unless search_path names it later).

import { nonStandardStringsVariant } from "./escapes.js";
import { nameList, nodeBody, nodeType, parseSql, walk } from "./parser.js";

/**
 * pg_catalog built-ins without side effects (immutable or stable, or volatile only in their
 * result: random, clock_timestamp). Deliberately absent: nextval, setval, currval, lastval,
 * set_config, setseed, pg_advisory_*, pg_notify, txid_current / pg_current_xact_id (assign an
 * xid), lo_*, dblink*, pg_cancel_backend, pg_terminate_backend, pg_reload_conf, pg_stat_reset*,
 * pg_switch_wal, pg_create_*, pg_logical_emit_message, pg_read_*file.
 */
export const SAFE_FUNCTIONS: ReadonlySet<string> = new Set(
  [
    // aggregates
    `count sum avg min max array_agg string_agg json_agg jsonb_agg json_agg_strict
     jsonb_agg_strict json_object_agg jsonb_object_agg json_object_agg_strict
     jsonb_object_agg_strict json_object_agg_unique jsonb_object_agg_unique bool_and bool_or
     every bit_and bit_or bit_xor stddev stddev_pop stddev_samp variance var_pop var_samp corr
     covar_pop covar_samp regr_avgx regr_avgy regr_count regr_intercept regr_r2 regr_slope
     regr_sxx regr_sxy regr_syy percentile_cont percentile_disc mode any_value range_agg
     range_intersect_agg xmlagg`,
    // window functions
    `row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value
     nth_value`,
    // math
    `abs cbrt ceil ceiling degrees div exp factorial floor gcd lcm ln log log10 min_scale mod
     pi power pow radians round scale sign sqrt trim_scale trunc width_bucket random
     random_normal acos asin atan atan2 cos cot sin tan acosd asind atand atan2d cosd cotd sind
     tand sinh cosh tanh asinh acosh atanh numeric int2 int4 int8 float4 float8 to_number`,
    // strings
    `ascii bit_length btrim char_length character_length chr concat concat_ws convert
     convert_from convert_to decode encode format initcap left length lower lpad ltrim md5
     normalize is_normalized octet_length overlay position quote_ident quote_literal
     quote_nullable regexp_count regexp_instr regexp_like regexp_match regexp_matches
     regexp_replace regexp_split_to_array regexp_split_to_table regexp_substr repeat replace
     reverse right rpad rtrim sha224 sha256 sha384 sha512 split_part starts_with
     string_to_array string_to_table strpos substr substring to_ascii to_hex translate unistr
     upper like_escape similar_escape similar_to_escape text varchar bpchar casefold
     gen_random_uuid uuidv4 uuidv7 pg_collation_for`,
    // date and time
    `age clock_timestamp date_add date_bin date_part date_subtract date_trunc extract isfinite
     justify_days justify_hours justify_interval make_date make_interval make_time
     make_timestamp make_timestamptz now overlaps statement_timestamp timeofday timezone
     to_char to_date to_timestamp transaction_timestamp date time timetz timestamp timestamptz
     interval`,
    // json
    `array_to_json json_array_elements json_array_elements_text json_array_length
     json_build_array json_build_object json_each json_each_text json_extract_path
     json_extract_path_text json_object json_object_keys json_populate_record
     json_populate_recordset json_strip_nulls json_to_record json_to_recordset json_typeof
     jsonb_array_elements jsonb_array_elements_text jsonb_array_length jsonb_build_array
     jsonb_build_object jsonb_each jsonb_each_text jsonb_extract_path jsonb_extract_path_text
     jsonb_insert jsonb_object jsonb_object_keys jsonb_path_exists jsonb_path_exists_tz
     jsonb_path_match jsonb_path_match_tz jsonb_path_query jsonb_path_query_array
     jsonb_path_query_array_tz jsonb_path_query_first jsonb_path_query_first_tz
     jsonb_path_query_tz jsonb_populate_record jsonb_populate_recordset
     jsonb_populate_record_valid jsonb_pretty jsonb_set jsonb_set_lax jsonb_strip_nulls
     jsonb_to_record jsonb_to_recordset jsonb_typeof row_to_json to_json to_jsonb json jsonb`,
    // arrays and ranges
    `array_append array_cat array_dims array_fill array_length array_lower array_ndims
     array_position array_positions array_prepend array_remove array_replace array_reverse
     array_sample array_shuffle array_sort array_to_string array_upper cardinality
     generate_series generate_subscripts trim_array unnest isempty lower_inc lower_inf
     upper_inc upper_inf range_merge int4range int8range numrange tsrange tstzrange daterange
     multirange`,
    // text search
    `to_tsvector to_tsquery plainto_tsquery phraseto_tsquery websearch_to_tsquery ts_rank
     ts_rank_cd ts_headline setweight strip numnode querytree array_to_tsvector
     tsvector_to_array ts_lexize`,
    // network
    `abbrev broadcast family host hostmask inet_merge inet_same_family masklen netmask network
     set_masklen`,
    // xml
    `xmlexists xml_is_well_formed xml_is_well_formed_content xml_is_well_formed_document xpath
     xpath_exists`,
    // system information
    `version current_database current_schema current_schemas current_setting inet_client_addr
     inet_client_port inet_server_addr inet_server_port pg_backend_pid pg_is_in_recovery
     pg_postmaster_start_time pg_conf_load_time pg_typeof format_type pg_get_expr
     pg_get_indexdef pg_get_viewdef pg_get_constraintdef pg_get_functiondef
     pg_get_function_arguments pg_get_function_result pg_get_function_identity_arguments
     pg_get_userbyid pg_get_serial_sequence pg_get_triggerdef pg_get_ruledef pg_get_keywords
     pg_encoding_to_char pg_char_to_encoding pg_client_encoding pg_size_pretty pg_size_bytes
     pg_column_size pg_table_size pg_relation_size pg_total_relation_size pg_indexes_size
     pg_database_size pg_tablespace_size pg_relation_filenode pg_relation_filepath
     obj_description col_description shobj_description to_regclass to_regtype to_regtypemod
     to_regproc to_regprocedure to_regoper to_regnamespace to_regrole to_regcollation
     pg_has_role has_table_privilege has_column_privilege has_any_column_privilege
     has_database_privilege has_function_privilege has_schema_privilege has_sequence_privilege
     has_type_privilege has_language_privilege has_tablespace_privilege
     has_foreign_data_wrapper_privilege has_server_privilege has_parameter_privilege
     row_security_active pg_table_is_visible pg_type_is_visible pg_function_is_visible
     pg_operator_is_visible pg_opclass_is_visible pg_collation_is_visible
     pg_conversion_is_visible pg_ts_config_is_visible pg_my_temp_schema pg_is_other_temp_schema
     pg_current_wal_lsn pg_current_wal_insert_lsn pg_current_wal_flush_lsn
     pg_last_wal_receive_lsn pg_last_wal_replay_lsn pg_last_xact_replay_timestamp
     pg_wal_lsn_diff pg_is_wal_replay_paused pg_get_wal_replay_pause_state pg_current_snapshot
     pg_snapshot_xmin pg_snapshot_xmax pg_visible_in_snapshot pg_xact_status
     pg_control_checkpoint pg_control_system pg_trigger_depth pg_jit_available
     pg_listening_channels pg_notification_queue_usage pg_blocking_pids
     pg_safe_snapshot_blocking_pids pg_get_partkeydef pg_partition_root pg_partition_tree
     pg_partition_ancestors pg_index_column_has_property pg_index_has_property
     pg_indexam_has_property pg_options_to_table pg_tablespace_location pg_describe_object
     pg_identify_object pg_identify_object_as_address pg_get_object_address pg_input_is_valid
     pg_input_error_info pg_sleep pg_sleep_for pg_sleep_until num_nulls num_nonnulls
     pg_stat_get_activity pg_get_backend_memory_contexts`,
  ]
    .join(" ")
    .split(/\s+/),
);

/** Table sampling methods built into Postgres. */
const SAFE_SAMPLING = new Set(["system", "bernoulli"]);

/** Whether the SQL text is certainly read-only (see the file comment); false when unsure. */
export function isReadOnly(sql: string): boolean {
  // A backslash in a plain literal makes the text mean something else with
  // standard_conforming_strings off, which this code cannot see: not certainly read-only.
  if (nonStandardStringsVariant(sql) !== null) return false;
  const parsed = parseSql(sql);
  if (!parsed.ok) return false;
  // No statement at all (blank, only comments or ';'): nothing runs, so replaying it is harmless.
  if (parsed.stmts.length === 0) return true;
  if (parsed.stmts.length !== 1) return false;
  const stmt = parsed.stmts[0];
  return readOnlyStatement(nodeType(stmt), nodeBody(stmt));
}

function readOnlyStatement(type: string, body: Record<string, unknown>): boolean {
  switch (type) {
    case "VariableShowStmt":
      return true;
    case "SelectStmt":
      return readOnlyTree(body);
    case "ExplainStmt": {
      // Any ANALYZE option, even `(ANALYZE false)`, is treated as running the statement.
      const options = Array.isArray(body.options) ? body.options : [];
      for (const opt of options) {
        if ((opt as { DefElem?: { defname?: string } })?.DefElem?.defname === "analyze") {
          return false;
        }
      }
      const query = body.query as Parameters<typeof nodeType>[0] | undefined;
      if (query === undefined) return false;
      const inner = nodeType(query);
      return inner === "SelectStmt" && readOnlyStatement(inner, nodeBody(query));
    }
    default:
      return false;
  }
}

/** Walks a SELECT: every nested statement must be a SELECT, and nothing may write or lock. */
function readOnlyTree(select: Record<string, unknown>): boolean {
  return walk(select, (key, value) => {
    const v = value as Record<string, unknown>;
    if (key === "intoClause") return false;
    if (key === "lockingClause") return !Array.isArray(value) || value.length === 0;
    // A data-modifying CTE or any other nested statement.
    if (key.endsWith("Stmt") && key !== "SelectStmt" && isNodeName(key)) return false;
    if (key === "FuncCall") return safeFunction(v.funcname);
    if (key === "RangeTableSample") {
      const method = nameList(v.method);
      return method !== null && method.length === 1 && SAFE_SAMPLING.has(method[0]);
    }
    return true;
  });
}

function isNodeName(key: string): boolean {
  const c = key.charCodeAt(0);
  return c >= 0x41 && c <= 0x5a;
}

function safeFunction(funcname: unknown): boolean {
  const names = nameList(funcname);
  if (names === null) return false;
  if (names.length === 1) return SAFE_FUNCTIONS.has(names[0]);
  return names.length === 2 && names[0] === "pg_catalog" && SAFE_FUNCTIONS.has(names[1]);
}
