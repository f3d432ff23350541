-- int_workflow_latest_run: what is each workflow called now, and how did its newest run go?
-- grain: one row per workflow that has at least one run.
-- A workflow can be renamed and every run carries the name it had when it ran, so the marts
-- label a workflow with the name on its newest run (by queued_at, then job_id for ties).

with runs as (

    select * from {{dataset}}.stg_workflow_runs

),

ranked as (

    select
        workflow_id,
        workflow_name,
        job_id,
        status,
        queued_at,
        row_number() over (
            partition by workflow_id
            order by queued_at desc nulls last, job_id
        ) as recency

    from runs

),

final as (

    select
        workflow_id,
        workflow_name,
        job_id as last_job_id,
        status as last_status,
        queued_at as last_queued_at

    from ranked
    where recency = 1

)

select * from final
