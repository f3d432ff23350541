-- runs_in_flight: what is queued or running right now, and for how long?
-- grain: one row per run whose last synced status is queued or running.
-- Ages are seconds up to current_timestamp, i.e. the moment the view is queried, so they grow
-- between syncs. A large seconds_since_update can mean a stuck run, or only a stale sync:
-- compare with sync_health.

with runs as (

    select * from {{dataset}}.stg_workflow_runs

),

final as (

    select
        job_id,
        workflow_id,
        workflow_name,
        status,
        queued_at,
        started_at,
        updated_at,
        cast(
            extract(epoch from current_timestamp) - extract(epoch from queued_at)
            as double precision
        ) as seconds_since_queued,
        -- null while the run is still waiting in the queue
        cast(
            extract(epoch from current_timestamp) - extract(epoch from started_at)
            as double precision
        ) as seconds_running,
        cast(
            extract(epoch from current_timestamp) - extract(epoch from updated_at)
            as double precision
        ) as seconds_since_update

    from runs
    where status in ('queued', 'running')

)

select * from final
order by queued_at
