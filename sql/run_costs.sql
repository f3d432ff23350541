-- run_costs: what did each run cost, and what did it produce for the money?
-- grain: one row per run (job_id).
-- Money is in US dollars (the `costs.total_usd` metric Sixtyfour reports); credits are
-- Sixtyfour credits (`credits_used`), not money. A null cost means the run reported none,
-- which is not the same as free: it is never counted as zero.

with runs as (

    select * from {{dataset}}.stg_workflow_runs

),

metrics as (

    select * from {{dataset}}.stg_run_metrics

),

final as (

    select
        runs.job_id,
        runs.workflow_id,
        runs.workflow_name,
        runs.status,
        runs.run_date,
        runs.queued_at,
        metrics.cost_usd,
        metrics.llm_cost_usd,
        metrics.credits_used,
        metrics.row_count,
        -- US dollars per output row; null when the run reported no cost or no rows
        metrics.cost_usd / nullif(metrics.row_count, 0) as cost_per_row_usd

    from runs
    left join metrics
        on runs.job_id = metrics.job_id

)

select * from final
