import { MantineProvider } from '@mantine/core'
import { render, screen } from '@testing-library/react'
import { describe, expect, it } from 'vitest'
import { StatusBadge } from './StatusBadge'

describe('StatusBadge', () => {
  it('shows the status in words and tags the element with it', () => {
    render(
      <MantineProvider>
        <StatusBadge label="partially_succeeded" />
      </MantineProvider>,
    )
    const badge = screen.getByText('partially succeeded')
    expect(badge.closest('[data-status]')?.getAttribute('data-status')).toBe('partially_succeeded')
  })
})
