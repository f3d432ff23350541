-- recent_failures: which runs failed, and what did the API say went wrong?
-- grain: one row per failed run, newest failure first.
-- failed_at is completed_at, else updated_at for a failed run the API did not date.

with runs as (

    select * from {{dataset}}.stg_workflow_runs

),

final as (

    select
        job_id,
        workflow_id,
        workflow_name,
        coalesce(completed_at, updated_at, queued_at) as failed_at,
        error_message,
        status_reason,
        queued_at,
        started_at,
        completed_at,
        run_seconds

    from runs
    where is_failed

)

select * from final
order by failed_at desc nulls last, job_id
