-- sync_health: did the recent syncs work, how long did they take, and is a gap still open?
-- grain: one row per sync (sync_id), newest first.
-- A gap is a stretch of runs the sync could not reach (more changed runs than the API's
-- 500-run cap lets it read back). gap_open is true while the newest sync that finished
-- (status ok or gap) reported one; failed syncs neither open nor close a gap. It is null
-- until some sync has finished.

with syncs as (

    select * from {{dataset}}.sync_runs

),

newest_finished as (

    select
        gap_detected

    from syncs
    where status in ('ok', 'gap')
    order by started_at desc
    limit 1

),

final as (

    select
        syncs.sync_id,
        syncs.started_at,
        syncs.finished_at,
        cast(
            extract(epoch from syncs.finished_at) - extract(epoch from syncs.started_at)
            as double precision
        ) as duration_seconds,
        syncs.status,
        syncs.runs_seen,
        syncs.runs_loaded,
        syncs.partitions,
        syncs.api_requests,
        syncs.http_retries,
        syncs.rate_limited,
        syncs.gap_detected,
        syncs.gap_detail,
        (select gap_detected from newest_finished) as gap_open,
        syncs.cursor_before,
        syncs.cursor_after,
        syncs.error,
        row_number() over (order by syncs.started_at desc, syncs.sync_id) = 1 as is_latest

    from syncs

)

select * from final
order by started_at desc, sync_id
