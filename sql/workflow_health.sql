-- workflow_health: which workflows fail, how often, and when did each last run and last fail?
-- grain: one row per workflow that has at least one run.
-- failure_rate is failed / terminal runs (completed + failed + cancelled), a fraction 0..1;
-- runs still queued or running are not counted in it.

with runs as (

    select * from {{dataset}}.stg_workflow_runs

),

latest_run as (

    select * from {{dataset}}.int_workflow_latest_run

),

per_workflow as (

    select
        workflow_id,
        count(*) as runs,
        count(*) filter (where status = 'queued') as queued,
        count(*) filter (where status = 'running') as running,
        count(*) filter (where status = 'completed') as completed,
        count(*) filter (where status = 'failed') as failed,
        count(*) filter (where status = 'cancelled') as cancelled,
        count(*) filter (where is_terminal) as terminal_runs,
        max(queued_at) as last_run_queued_at,
        max(completed_at) filter (where status = 'completed') as last_completed_at,
        -- a failed run without completed_at is dated by its last update
        max(coalesce(completed_at, updated_at, queued_at)) filter (where is_failed)
            as last_failure_at

    from runs
    group by workflow_id

),

final as (

    select
        per_workflow.workflow_id,
        latest_run.workflow_name,
        per_workflow.runs,
        per_workflow.queued,
        per_workflow.running,
        per_workflow.completed,
        per_workflow.failed,
        per_workflow.cancelled,
        per_workflow.terminal_runs,
        cast(per_workflow.failed as double precision)
            / nullif(per_workflow.terminal_runs, 0) as failure_rate,
        latest_run.last_status,
        per_workflow.last_run_queued_at,
        per_workflow.last_completed_at,
        per_workflow.last_failure_at

    from per_workflow
    inner join latest_run
        on per_workflow.workflow_id = latest_run.workflow_id

)

select * from final
