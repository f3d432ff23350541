-- daily_runs: how many runs did each workflow have per day, how many failed, and how long
-- did they take?
-- grain: one row per day (UTC, by queued_at) and workflow.
-- failure_rate is failed / terminal runs of that day, a fraction 0..1.
-- Run-time percentiles are over completed runs only, in seconds, so fast failures do not
-- make a workflow look quick. Costs per day are in daily_costs (they need reported metrics).

with runs as (

    select * from {{dataset}}.stg_workflow_runs

),

latest_run as (

    select * from {{dataset}}.int_workflow_latest_run

),

per_day as (

    select
        run_date,
        workflow_id,
        count(*) as runs,
        count(*) filter (where status = 'completed') as completed,
        count(*) filter (where status = 'failed') as failed,
        count(*) filter (where status = 'cancelled') as cancelled,
        count(*) filter (where is_terminal) as terminal_runs,
        percentile_cont(0.5) within group (order by run_seconds)
            filter (where status = 'completed') as p50_run_seconds,
        percentile_cont(0.95) within group (order by run_seconds)
            filter (where status = 'completed') as p95_run_seconds,
        percentile_cont(0.5) within group (order by queue_wait_seconds)
            as p50_queue_wait_seconds

    from runs
    group by run_date, workflow_id

),

final as (

    select
        per_day.run_date,
        per_day.workflow_id,
        latest_run.workflow_name,
        per_day.runs,
        per_day.completed,
        per_day.failed,
        per_day.cancelled,
        per_day.terminal_runs,
        cast(per_day.failed as double precision)
            / nullif(per_day.terminal_runs, 0) as failure_rate,
        per_day.p50_run_seconds,
        per_day.p95_run_seconds,
        per_day.p50_queue_wait_seconds

    from per_day
    inner join latest_run
        on per_day.workflow_id = latest_run.workflow_id

)

select * from final
