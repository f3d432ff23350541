-- stg_workflow_runs: every workflow run as the API reported it, with one spelling per status
-- and the timings every mart needs.
-- grain: one row per run (job_id).
-- Only renames, casts and normalises; columns the API may add later are left out on purpose,
-- so a new field never changes this view's shape.

with source as (

    select * from {{dataset}}.workflow_runs

),

renamed as (

    select
        job_id,
        workflow_id,
        workflow_name,
        step as workflow_step,
        user_id,
        -- Sixtyfour answers spell two statuses both ways: `canceled` and `succeeded` also occur.
        case lower(trim(status))
            when 'canceled' then 'cancelled'
            when 'succeeded' then 'completed'
            else lower(trim(status))
        end as status,
        status as status_raw,
        status_reason,
        error_message,
        blocks_count,
        created_at,
        updated_at,
        queued_at,
        started_at,
        completed_at,
        duration_ms

    from source

),

final as (

    select
        *,
        status in ('completed', 'failed', 'cancelled') as is_terminal,
        status = 'failed' as is_failed,
        -- the day (UTC, whatever the session time zone) the run was queued; runs are listed
        -- by queued_at, created_at stands in when queued_at is missing
        cast(coalesce(queued_at, created_at) at time zone 'UTC' as date) as run_date,
        -- seconds between being queued and starting; null until the run starts
        cast(
            extract(epoch from started_at) - extract(epoch from queued_at) as double precision
        ) as queue_wait_seconds,
        -- seconds of execution: the API's duration_ms when given, else completed - started;
        -- null for a run that has not finished and reports no duration
        cast(
            coalesce(
                duration_ms / 1000.0,
                extract(epoch from completed_at) - extract(epoch from started_at)
            ) as double precision
        ) as run_seconds

    from renamed

)

select * from final
