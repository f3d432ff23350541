-- workflow_costs: which workflows cost the most, per run and per row?
-- grain: one row per workflow that has at least one run.
-- Money in US dollars, credits in Sixtyfour credits. Averages are over the runs that
-- reported a cost; runs without one are counted in runs but not treated as free.

with run_costs as (

    select * from {{dataset}}.run_costs

),

latest_run as (

    select * from {{dataset}}.int_workflow_latest_run

),

per_workflow as (

    select
        workflow_id,
        count(*) as runs,
        count(cost_usd) as runs_with_cost,
        sum(cost_usd) as cost_usd,
        sum(llm_cost_usd) as llm_cost_usd,
        avg(cost_usd) as avg_cost_per_run_usd,
        sum(credits_used) as credits_used,
        cast(sum(row_count) as bigint) as row_count,
        -- per row only over runs that reported both a cost and rows, so uncosted rows do not
        -- dilute it
        sum(cost_usd) filter (where cost_usd is not null and row_count > 0)
            / nullif(sum(row_count) filter (where cost_usd is not null and row_count > 0), 0)
            as cost_per_row_usd

    from run_costs
    group by workflow_id

),

final as (

    select
        per_workflow.workflow_id,
        latest_run.workflow_name,
        per_workflow.runs,
        per_workflow.runs_with_cost,
        per_workflow.cost_usd,
        per_workflow.llm_cost_usd,
        per_workflow.avg_cost_per_run_usd,
        per_workflow.credits_used,
        per_workflow.row_count,
        per_workflow.cost_per_row_usd

    from per_workflow
    inner join latest_run
        on per_workflow.workflow_id = latest_run.workflow_id

)

select * from final
