-- run_durations: how long does each workflow take to run, and how long do its runs wait in
-- the queue first?
-- grain: one row per workflow that has at least one run.
-- All values in seconds. Run times are over completed runs only (fast failures and
-- cancellations would make a workflow look quicker than it is); queue waits are over every
-- run that has started.

with runs as (

    select * from {{dataset}}.stg_workflow_runs

),

latest_run as (

    select * from {{dataset}}.int_workflow_latest_run

),

per_workflow as (

    select
        workflow_id,
        count(run_seconds) filter (where status = 'completed') as timed_runs,
        percentile_cont(0.5) within group (order by run_seconds)
            filter (where status = 'completed') as p50_run_seconds,
        percentile_cont(0.9) within group (order by run_seconds)
            filter (where status = 'completed') as p90_run_seconds,
        percentile_cont(0.95) within group (order by run_seconds)
            filter (where status = 'completed') as p95_run_seconds,
        max(run_seconds) filter (where status = 'completed') as max_run_seconds,
        count(queue_wait_seconds) as started_runs,
        percentile_cont(0.5) within group (order by queue_wait_seconds)
            as p50_queue_wait_seconds,
        percentile_cont(0.95) within group (order by queue_wait_seconds)
            as p95_queue_wait_seconds,
        max(queue_wait_seconds) as max_queue_wait_seconds

    from runs
    group by workflow_id

),

final as (

    select
        per_workflow.workflow_id,
        latest_run.workflow_name,
        per_workflow.timed_runs,
        per_workflow.p50_run_seconds,
        per_workflow.p90_run_seconds,
        per_workflow.p95_run_seconds,
        per_workflow.max_run_seconds,
        per_workflow.started_runs,
        per_workflow.p50_queue_wait_seconds,
        per_workflow.p95_queue_wait_seconds,
        per_workflow.max_queue_wait_seconds

    from per_workflow
    inner join latest_run
        on per_workflow.workflow_id = latest_run.workflow_id

)

select * from final
