-- daily_costs: how much did each workflow spend per day?
-- grain: one row per day (UTC, by queued_at) and workflow; joins daily_runs on both keys.
-- Money in US dollars, credits in Sixtyfour credits; only runs that reported a cost add to it.

with run_costs as (

    select * from {{dataset}}.run_costs

),

latest_run as (

    select * from {{dataset}}.int_workflow_latest_run

),

per_day as (

    select
        run_date,
        workflow_id,
        count(*) as runs,
        count(cost_usd) as runs_with_cost,
        sum(cost_usd) as cost_usd,
        sum(credits_used) as credits_used,
        cast(sum(row_count) as bigint) as row_count

    from run_costs
    group by run_date, workflow_id

),

final as (

    select
        per_day.run_date,
        per_day.workflow_id,
        latest_run.workflow_name,
        per_day.runs,
        per_day.runs_with_cost,
        per_day.cost_usd,
        per_day.credits_used,
        per_day.row_count

    from per_day
    inner join latest_run
        on per_day.workflow_id = latest_run.workflow_id

)

select * from final
