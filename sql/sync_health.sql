-- sync_health: did the recent syncs work, how long did they take, and is a gap still open?
-- grain: one row per sync (sync_id), newest first. duration_seconds runs from the sync's
-- start to the end of its load (to its ledger row, for a sync with nothing to load).
-- A gap is a stretch of runs the sync could not reach (more changed runs than the API's
-- 500-run cap lets it read back). gap_open is true while a sync reported a gap and no sync
-- after it read as deep as the API allows (a backfill, or a first sync) and found none: an
-- incremental sync reads on from its cursor and never looks back at what was missed. Failed
-- syncs neither open nor close a gap. It is null until some sync has finished. The
-- `status` command applies the same rule. details_unread counts the runs whose live_status
-- that sync left unread (the read failed, or was not tried once the API kept failing): runs
-- waiting for block detail, and runs in flight it followed up. Its warnings name them.

with syncs as (

    select * from {{dataset}}.sync_runs

),

open_gaps as (

    select
        gap.sync_id

    from syncs as gap
    where gap.status = 'gap'
      and not exists (
          select 1
          from syncs as later
          where later.status = 'ok'
            and (later.mode = 'backfill' or later.cursor_before is null)
            and later.started_at > gap.started_at
      )

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
        syncs.details_unread,
        case
            when exists (select 1 from syncs where status in ('ok', 'gap'))
                then exists (select 1 from open_gaps)
        end as gap_open,
        syncs.cursor_before,
        syncs.cursor_after,
        syncs.error,
        row_number() over (order by syncs.started_at desc, syncs.sync_id) = 1 as is_latest

    from syncs

)

select * from final
order by started_at desc, sync_id
